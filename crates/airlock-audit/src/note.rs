//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys, the format Go's
//! checksum database and transparency logs sign their checkpoints in.
//!
//! A note is its text (UTF-8, non-empty, ending in a newline, no control characters but
//! newline), a blank line, then one line per signature: `— <key name> <base64(key id ||
//! signature)>`, where the key id is the first 4 bytes (big-endian) of
//! `SHA-256(key name || "\n" || 0x01 || public key)` and the signature is Ed25519 over the text.
//!
//! Keys travel as text, compatible with `golang.org/x/mod/sumdb/note`:
//! - verifier key: `<name>+<8 hex digits of the key id>+<base64(0x01 || public key)>`;
//! - signer (private) key: `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>`.
//!
//! Not here: what the text says (see [`crate::checkpoint`]), where keys are stored, and
//! generating keys (the caller draws the seed from the operating system).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// The signature type byte of Ed25519 keys.
const ALG_ED25519: u8 = 0x01;
/// What opens a signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// What opens a signer key.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// At most this many signature lines are read (as Go's reader does).
const MAX_SIGNATURES: usize = 100;

/// A key, note or signature that cannot be used. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or holds whitespace or `+`.
    #[error("invalid key name `{0}`: it must be non-empty, without spaces or `+`")]
    BadKeyName(String),
    /// A verifier key's text is not `<name>+<hex id>+<base64 key>` of an Ed25519 key.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(&'static str),
    /// A signer key's text is not `PRIVATE+KEY+<name>+<hex id>+<base64 key>`.
    #[error("malformed signing key: {0}")]
    BadSignerKey(&'static str),
    /// The text to sign is not valid note text.
    #[error("cannot sign: {0}")]
    BadText(&'static str),
    /// The note is not a text, a blank line and signature lines.
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    /// No signature of the expected key is on the note.
    #[error("the note carries no signature by key {name} (key id {id:08x})")]
    NotSigned {
        /// The expected key's name.
        name: String,
        /// Its key id.
        id: u32,
    },
    /// A signature that claims to be the expected key's does not verify: the text was changed
    /// after signing, or the signature was forged.
    #[error("the signature by key {name} does not verify: the note was changed or forged")]
    BadSignature {
        /// The key's name.
        name: String,
    },
}

/// The key id of an Ed25519 key named `name`.
fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::BadKeyName(name.to_owned()));
    }
    Ok(())
}

/// Splits `<name>+<hex id>+<base64 key>` into its parts (the base64 may contain `+`).
fn split_key(text: &str) -> Option<(&str, u32, Vec<u8>)> {
    let (name, rest) = text.split_once('+')?;
    let (id, key) = rest.split_once('+')?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = u32::from_str_radix(id, 16).ok()?;
    let key = B64.decode(key).ok()?;
    Some((name, id, key))
}

/// The public half: checks signatures of one key.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl std::fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteVerifier({self})")
    }
}

impl std::fmt::Display for NoteVerifier {
    /// The verifier key text: `<name>+<hex id>+<base64(0x01 || key)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;

    /// Reads a verifier key text (surrounding whitespace ignored).
    fn from_str(text: &str) -> Result<NoteVerifier, NoteError> {
        use NoteError::BadVerifierKey as Bad;
        let (name, id, raw) =
            split_key(text.trim()).ok_or(Bad("expected <name>+<8 hex digits>+<base64 key>"))?;
        check_name(name)?;
        let (alg, key) = raw.split_first().ok_or(Bad("the key is empty"))?;
        if *alg != ALG_ED25519 {
            return Err(Bad("not an Ed25519 key (type byte is not 0x01)"));
        }
        let key: [u8; 32] = key.try_into().map_err(|_| Bad("not 32 bytes of key"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| Bad("not an Ed25519 point"))?;
        if key_id(name, &key) != id {
            return Err(Bad("its key id does not match its name and key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            id,
            key,
        })
    }
}

impl NoteVerifier {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Checks the note's signature by this key and returns its text. Signatures by other keys
    /// are ignored, as the format intends (others may cosign).
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        let (text, sigs) = split_note(note)?;
        let mut found = false;
        for sig in sigs {
            let (name, blob) = parse_signature_line(sig)?;
            if name != self.name || blob.len() < 4 || blob[..4] != self.id.to_be_bytes() {
                continue;
            }
            found = true;
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..]).map_err(|_| {
                NoteError::BadSignature {
                    name: self.name.clone(),
                }
            })?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature {
                    name: self.name.clone(),
                })?;
        }
        if !found {
            return Err(NoteError::NotSigned {
                name: self.name.clone(),
                id: self.id,
            });
        }
        Ok(text)
    }
}

/// Splits a note at its last blank line into the text (with its final newline) and the
/// signature lines.
fn split_note(note: &str) -> Result<(&str, std::str::Lines<'_>), NoteError> {
    use NoteError::Malformed as Bad;
    if !note.ends_with('\n') {
        return Err(Bad("it does not end with a newline"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(Bad("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    check_text(text).map_err(Bad)?;
    if sigs.is_empty() {
        return Err(Bad("it has no signature lines"));
    }
    if sigs.lines().count() > MAX_SIGNATURES {
        return Err(Bad("it has more than 100 signature lines"));
    }
    Ok((text, sigs.lines()))
}

fn parse_signature_line(line: &str) -> Result<(&str, Vec<u8>), NoteError> {
    use NoteError::Malformed as Bad;
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(Bad(
        "a signature line does not start with an em dash and a space",
    ))?;
    let (name, blob) = rest
        .split_once(' ')
        .ok_or(Bad("a signature line is not `— <name> <base64>`"))?;
    check_name(name).map_err(|_| Bad("a signature line has an invalid key name"))?;
    let blob = B64
        .decode(blob)
        .map_err(|_| Bad("a signature line's signature is not base64"))?;
    if blob.len() < 5 {
        return Err(Bad("a signature line's signature is too short"));
    }
    Ok((name, blob))
}

fn check_text(text: &str) -> Result<(), &'static str> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err("the text must be non-empty and end with a newline");
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err("the text holds a control character other than newline");
    }
    Ok(())
}

/// The private half: signs notes. Its `Debug` shows the name and key id only.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{:08x}, [redacted])", self.name, self.id)
    }
}

impl NoteSigner {
    /// The signer for the Ed25519 key made from `seed` (32 random bytes), named `name`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(seed);
        Ok(NoteSigner {
            name: name.to_owned(),
            id: key_id(name, &key.verifying_key()),
            key,
        })
    }

    /// Reads a signer key text `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`
    /// (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<NoteSigner, NoteError> {
        use NoteError::BadSignerKey as Bad;
        let rest = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(Bad("it does not start with PRIVATE+KEY+"))?;
        let (name, id, raw) =
            split_key(rest).ok_or(Bad("expected PRIVATE+KEY+<name>+<8 hex digits>+<base64>"))?;
        let (alg, seed) = raw.split_first().ok_or(Bad("the key is empty"))?;
        if *alg != ALG_ED25519 {
            return Err(Bad("not an Ed25519 key (type byte is not 0x01)"));
        }
        let seed: &[u8; 32] = seed.try_into().map_err(|_| Bad("not 32 bytes of key"))?;
        let signer = NoteSigner::from_seed(name, seed)?;
        if signer.id != id {
            return Err(Bad("its key id does not match its name and key"));
        }
        Ok(signer)
    }

    /// The signer key text, for the key file. It is the secret: never print or log it.
    pub fn to_private_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(raw)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` and returns the whole note: the text, a blank line, the signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text).map_err(NoteError::BadText)?;
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of golang.org/x/mod/sumdb/note (note_test.go and the package docs).
    const PETER_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VERIFIER: &str =
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                              then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    // The example of c2sp.org/signed-note.
    const FOO_VERIFIER: &str =
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const FOO_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    fn peter_note() -> String {
        format!("{PETER_TEXT}\n{PETER_SIG}")
    }

    #[test]
    fn signing_the_go_test_vector_gives_its_signature_byte_for_byte() {
        let signer = NoteSigner::parse(PETER_SIGNER).expect("valid signer key");
        assert_eq!(signer.verifier().to_string(), PETER_VERIFIER);
        assert_eq!(signer.sign(PETER_TEXT).expect("valid text"), peter_note());
        assert_eq!(signer.to_private_text(), PETER_SIGNER);
        assert!(
            !format!("{signer:?}").contains("AYEK"),
            "Debug hides the key"
        );
    }

    #[test]
    fn the_go_and_c2sp_examples_verify() {
        let peter: NoteVerifier = PETER_VERIFIER.parse().expect("valid verifier key");
        assert_eq!(peter.open(&peter_note()), Ok(PETER_TEXT));
        let foo: NoteVerifier = FOO_VERIFIER.parse().expect("valid verifier key");
        assert_eq!(foo.open(FOO_NOTE), Ok("This is an example message.\n"));
    }

    #[test]
    fn a_changed_text_or_signature_does_not_verify() {
        let peter: NoteVerifier = PETER_VERIFIER.parse().expect("valid");
        let changed = peter_note().replace("answer", "Answer");
        assert_eq!(
            peter.open(&changed),
            Err(NoteError::BadSignature {
                name: "PeterNeumann".into()
            })
        );
        // Flip one bit of the signature (keeping the key id).
        let mut blob = B64
            .decode("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=")
            .expect("base64");
        blob[10] ^= 1;
        let forged = format!(
            "{PETER_TEXT}\n\u{2014} PeterNeumann {}\n",
            B64.encode(&blob)
        );
        assert!(matches!(
            peter.open(&forged),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_note_signed_by_another_key_is_not_signed_by_this_one() {
        let other = NoteSigner::from_seed("PeterNeumann", &[7; 32]).expect("valid");
        let note = other.sign(PETER_TEXT).expect("valid");
        let peter: NoteVerifier = PETER_VERIFIER.parse().expect("valid");
        assert_eq!(
            peter.open(&note),
            Err(NoteError::NotSigned {
                name: "PeterNeumann".into(),
                id: 0xc74f20a3
            })
        );
        // Another key's extra signature does not get in the way.
        let cosigned = format!("{}{PETER_SIG}", note);
        assert_eq!(peter.open(&cosigned), Ok(PETER_TEXT));
    }

    #[test]
    fn malformed_keys_and_notes_are_refused() {
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(bad.parse::<NoteVerifier>().is_err(), "{bad:?}");
        }
        assert!(NoteSigner::parse(PETER_VERIFIER).is_err());
        assert!(NoteSigner::parse(&PETER_SIGNER.replace("c74f20a3", "c74f20a4")).is_err());
        let peter: NoteVerifier = PETER_VERIFIER.parse().expect("valid");
        for bad in [
            PETER_TEXT.to_owned(),
            format!("{PETER_TEXT}\n"),
            format!("{PETER_TEXT}\n- PeterNeumann x08go\n"),
            format!("{PETER_TEXT}\n{}", PETER_SIG.trim_end()),
            format!("a\u{1b}b\n\n{PETER_SIG}"),
        ] {
            assert!(
                matches!(peter.open(&bad), Err(NoteError::Malformed(_))),
                "{bad:?}"
            );
        }
        let signer = NoteSigner::parse(PETER_SIGNER).expect("valid");
        assert!(signer.sign("no newline").is_err());
        assert!(signer.sign("nul\0\n").is_err());
        assert!(NoteSigner::from_seed("a+b", &[1; 32]).is_err());
    }
}
