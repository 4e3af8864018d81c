//! Signed checkpoints of the audit chain, in the C2SP checkpoint format
//! (<https://c2sp.org/tlog-checkpoint>) as a signed note (see [`crate::note`]):
//!
//! ```text
//! <origin>                       the key name (one log, one key name)
//! <size>                         how many events the chain held, decimal
//! <base64 of the head's hash>    the last event's hash (32 bytes; the genesis hash at size 0)
//!
//! — <key name> <base64(key id || Ed25519 signature)>
//! ```
//!
//! The "root hash" of the format is the head of airlock's hash chain (the last event's
//! hash, which commits to every event before it), not the root of a Merkle tree: proving that
//! a later chain extends a checkpoint means re-reading the chain up to the checkpoint's size.
//!
//! A checkpoint stored outside the database pins history: whoever can rewrite the database
//! can recompute every hash (no secret is involved), but cannot sign a checkpoint. A chain
//! whose event at the checkpoint's size has another hash was rewritten; a chain shorter than
//! the checkpoint was truncated or reset. [`check_chain`] says which.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::event::Head;
use crate::note::{NoteError, NoteSigner, NoteVerifier};

/// A checkpoint's contents: whose log, how long, and its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name: the signing key's name.
    pub origin: String,
    /// The head: `seq` is the tree size, `hash` the head hash (lowercase hex).
    pub head: Head,
}

/// A checkpoint that cannot be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed note itself is bad: malformed, unsigned by the key, or its signature fails.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The note verifies but its text is not a checkpoint.
    #[error("not an audit checkpoint: {0}")]
    Malformed(&'static str),
    /// The checkpoint is of another log than the key's.
    #[error("the checkpoint is of log `{found}`, not of `{expected}` (the key's name)")]
    OtherOrigin {
        /// The key's name.
        expected: String,
        /// The checkpoint's origin line.
        found: String,
    },
    /// A head whose hash is not 64 lowercase hex digits (the store holds something odd).
    #[error("the audit head hash is not 64 hex digits")]
    BadHeadHash,
}

impl Checkpoint {
    /// The checkpoint's text (the part that is signed).
    pub fn body(&self) -> Result<String, CheckpointError> {
        let hash = hex_to_bytes(&self.head.hash).ok_or(CheckpointError::BadHeadHash)?;
        Ok(format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.head.seq,
            B64.encode(hash)
        ))
    }

    /// Reads a checkpoint's text. Extension lines after the hash are allowed and ignored.
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        use CheckpointError::Malformed as Bad;
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty());
        let origin = origin.ok_or(Bad("the first line (origin) is empty"))?;
        let size = lines.next().ok_or(Bad("no tree size line"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(Bad("the tree size is not a decimal number"));
        }
        let seq: u64 = size
            .parse()
            .map_err(|_| Bad("the tree size is too large"))?;
        let hash = lines.next().ok_or(Bad("no root hash line"))?;
        let hash = B64
            .decode(hash)
            .map_err(|_| Bad("the root hash is not base64"))?;
        if hash.len() != 32 {
            return Err(Bad("the root hash is not 32 bytes"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            head: Head {
                seq,
                hash: bytes_to_hex(&hash),
            },
        })
    }
}

/// Signs a checkpoint of the chain ending at `head`, under the signer's name.
pub fn sign_checkpoint(signer: &NoteSigner, head: &Head) -> Result<String, CheckpointError> {
    let body = Checkpoint {
        origin: signer.name().to_owned(),
        head: head.clone(),
    }
    .body()?;
    Ok(signer.sign(&body)?)
}

/// Checks a signed checkpoint with `verifier` and reads it: the signature first, then that
/// the text is a checkpoint of the key's log.
pub fn open_checkpoint(verifier: &NoteVerifier, note: &str) -> Result<Checkpoint, CheckpointError> {
    let text = verifier.open(note)?;
    let checkpoint = Checkpoint::parse_body(text)?;
    if checkpoint.origin != verifier.name() {
        return Err(CheckpointError::OtherOrigin {
            expected: verifier.name().to_owned(),
            found: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

/// How a chain that verifies on its own contradicts a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointMismatch {
    /// The chain is shorter than the checkpoint: events were removed from the end, or the
    /// whole log was deleted and started again.
    #[error("the audit log holds {found} events but a signed checkpoint records {signed}: events were deleted from the end, or the log was reset")]
    Shorter {
        /// The checkpoint's size.
        signed: u64,
        /// The chain's length.
        found: u64,
    },
    /// The chain's event at the checkpoint's size has another hash: the events up to it were
    /// rewritten and re-hashed, or the log was reset and grew again.
    #[error("audit event {seq} does not match the signed checkpoint: the log up to it was rewritten and re-hashed, or reset")]
    Rewritten {
        /// The checkpoint's size.
        seq: u64,
    },
}

/// Checks a verified chain of `count` events against `checkpoint`, given `at_size`: the head
/// of that chain at the checkpoint's size (its event `checkpoint.head.seq`; the genesis head
/// at size 0), `None` when the chain is shorter.
pub fn check_chain(
    checkpoint: &Checkpoint,
    count: u64,
    at_size: Option<&Head>,
) -> Result<(), CheckpointMismatch> {
    let signed = &checkpoint.head;
    let at_size = match at_size {
        Some(head) if count >= signed.seq && head.seq == signed.seq => head,
        _ => {
            return Err(CheckpointMismatch::Shorter {
                signed: signed.seq,
                found: count,
            })
        }
    };
    if at_size.hash != signed.hash {
        return Err(CheckpointMismatch::Rewritten { seq: signed.seq });
    }
    Ok(())
}

fn hex_to_bytes(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn bytes_to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GENESIS_HASH;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("airlock.example.com/prod", &[42; 32]).expect("valid name")
    }

    fn head(seq: u64, byte: u8) -> Head {
        Head {
            seq,
            hash: bytes_to_hex(&[byte; 32]),
        }
    }

    #[test]
    fn a_checkpoint_is_origin_size_and_base64_hash_then_the_signature() {
        let note = sign_checkpoint(&signer(), &head(42, 0xab)).expect("signs");
        let mut lines = note.lines();
        assert_eq!(lines.next(), Some("airlock.example.com/prod"));
        assert_eq!(lines.next(), Some("42"));
        assert_eq!(lines.next(), Some(B64.encode([0xab; 32]).as_str()));
        assert_eq!(lines.next(), Some(""));
        let sig = lines.next().expect("a signature line");
        assert!(
            sig.starts_with("\u{2014} airlock.example.com/prod "),
            "{sig}"
        );
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn signing_then_opening_gives_the_head_back() {
        let signer = signer();
        for h in [head(42, 0xab), Head::genesis()] {
            let note = sign_checkpoint(&signer, &h).expect("signs");
            let cp = open_checkpoint(&signer.verifier(), &note).expect("verifies");
            assert_eq!(cp.head, h);
            assert_eq!(cp.origin, "airlock.example.com/prod");
        }
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n0\n{}\n", B64.encode([0; 32])))
                .expect("valid")
                .head
                .hash,
            GENESIS_HASH
        );
    }

    #[test]
    fn an_edited_checkpoint_or_another_key_is_refused() {
        let signer = signer();
        let note = sign_checkpoint(&signer, &head(42, 0xab)).expect("signs");
        let edited = note.replacen("\n42\n", "\n41\n", 1);
        assert!(matches!(
            open_checkpoint(&signer.verifier(), &edited),
            Err(CheckpointError::Note(NoteError::BadSignature { .. }))
        ));
        let other = NoteSigner::from_seed("airlock.example.com/prod", &[43; 32]).expect("valid");
        assert!(matches!(
            open_checkpoint(&other.verifier(), &note),
            Err(CheckpointError::Note(NoteError::NotSigned { .. }))
        ));
        // Same key bytes, another log name: another key id, so not signed by it either.
        let renamed = NoteSigner::from_seed("staging", &[42; 32]).expect("valid");
        assert!(open_checkpoint(&renamed.verifier(), &note).is_err());
    }

    #[test]
    fn a_signed_note_that_is_not_a_checkpoint_of_this_log_is_refused() {
        let signer = signer();
        for text in [
            "airlock.example.com/prod\n042\nAAAA\n",
            "airlock.example.com/prod\n-1\n",
            "airlock.example.com/prod\n1\nAAAA\n",
            "airlock.example.com/prod\n",
        ] {
            let note = signer.sign(text).expect("signs");
            assert!(
                matches!(
                    open_checkpoint(&signer.verifier(), &note),
                    Err(CheckpointError::Malformed(_))
                ),
                "{text:?}"
            );
        }
        let other_log = format!("staging\n1\n{}\n", B64.encode([1; 32]));
        assert_eq!(
            open_checkpoint(&signer.verifier(), &signer.sign(&other_log).expect("signs")),
            Err(CheckpointError::OtherOrigin {
                expected: "airlock.example.com/prod".into(),
                found: "staging".into()
            })
        );
    }

    #[test]
    fn a_chain_that_grew_from_the_checkpoint_passes_and_any_other_fails() {
        let cp = Checkpoint {
            origin: "o".into(),
            head: head(5, 1),
        };
        assert_eq!(check_chain(&cp, 5, Some(&head(5, 1))), Ok(()));
        assert_eq!(check_chain(&cp, 9, Some(&head(5, 1))), Ok(()));
        assert_eq!(
            check_chain(&cp, 9, Some(&head(5, 2))),
            Err(CheckpointMismatch::Rewritten { seq: 5 })
        );
        assert_eq!(
            check_chain(&cp, 4, None),
            Err(CheckpointMismatch::Shorter {
                signed: 5,
                found: 4
            })
        );
        let empty = Checkpoint {
            origin: "o".into(),
            head: Head::genesis(),
        };
        assert_eq!(check_chain(&empty, 0, Some(&Head::genesis())), Ok(()));
    }
}
