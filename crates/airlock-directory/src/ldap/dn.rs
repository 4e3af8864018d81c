//! Distinguished names: a comparison key, so that `member` and `memberOf` values match the DNs
//! of the entries they name however the server spelled them (`CN=Ops` vs `cn=ops`, `\,` vs
//! `\2C`, spaces after commas, multi-valued RDNs in any order).
//!
//! What it does not do: resolve attribute type OIDs to names (`2.5.4.3=x` is not `cn=x`) or
//! apply per-attribute matching rules beyond case-insensitive matching, which is what every
//! naming attribute of OpenLDAP, JumpCloud and Active Directory uses.

use std::fmt::Write as _;

/// A normalised DN: RDNs in order; in each, the attribute types lowercased and the values
/// unescaped, lowercased and re-escaped in one canonical way, AVAs sorted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DnKey(String);

impl DnKey {
    /// The key of `dn`; a string that is not a valid DN is keyed by its lowercased, trimmed text
    /// (it then only matches itself).
    pub(crate) fn new(dn: &str) -> Self {
        match parse(dn) {
            Some(rdns) => Self(canonical(&rdns)),
            None => Self(dn.trim().to_lowercase()),
        }
    }
}

/// Whether `dn` parses as an RFC 4514 DN (the empty DN included).
pub(crate) fn is_valid(dn: &str) -> bool {
    parse(dn).is_some()
}

type Rdn = Vec<(String, String)>;

fn canonical(rdns: &[Rdn]) -> String {
    let mut out = String::new();
    for (i, rdn) in rdns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut avas: Vec<(String, String)> = rdn
            .iter()
            .map(|(attr, value)| (attr.to_ascii_lowercase(), value.to_lowercase()))
            .collect();
        avas.sort();
        for (j, (attr, value)) in avas.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let _ = write!(out, "{attr}={}", ldap3::dn_escape(value.as_str()));
        }
    }
    out
}

/// Parses an RFC 4514 string (also accepting RFC 2253/1779 leniencies: spaces around `,` `+`
/// `=`, `;` as separator, quoted values). `None` when it is not a DN.
fn parse(dn: &str) -> Option<Vec<Rdn>> {
    let bytes = dn.as_bytes();
    let mut pos = skip_spaces(bytes, 0);
    let mut rdns = Vec::new();
    if pos == bytes.len() {
        return Some(rdns);
    }
    let mut rdn: Rdn = Vec::new();
    loop {
        // Attribute type: a name (letters, digits, hyphens) or a numeric OID.
        let start = pos;
        while pos < bytes.len()
            && (bytes[pos].is_ascii_alphanumeric() || matches!(bytes[pos], b'-' | b'.'))
        {
            pos += 1;
        }
        let attr = &dn[start..pos];
        if attr.is_empty() {
            return None;
        }
        pos = skip_spaces(bytes, pos);
        if bytes.get(pos) != Some(&b'=') {
            return None;
        }
        pos = skip_spaces(bytes, pos + 1);
        let (value, next) = parse_value(bytes, pos)?;
        pos = skip_spaces(bytes, next);
        rdn.push((attr.to_owned(), value));
        match bytes.get(pos) {
            None => {
                rdns.push(rdn);
                return Some(rdns);
            }
            Some(b'+') => pos = skip_spaces(bytes, pos + 1),
            Some(b',' | b';') => {
                rdns.push(std::mem::take(&mut rdn));
                pos = skip_spaces(bytes, pos + 1);
            }
            Some(_) => return None,
        }
    }
}

/// One attribute value starting at `pos`; returns it unescaped and the position after it
/// (trailing unescaped spaces excluded).
fn parse_value(bytes: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut value: Vec<u8> = Vec::new();
    match bytes.get(pos) {
        // A BER-encoded value: kept as its (case-insensitive) hex text.
        Some(b'#') => {
            let start = pos;
            while pos < bytes.len() && !matches!(bytes[pos], b',' | b';' | b'+' | b' ') {
                pos += 1;
            }
            let text = std::str::from_utf8(&bytes[start..pos]).ok()?;
            return Some((text.to_owned(), pos));
        }
        Some(b'"') => {
            pos += 1;
            loop {
                match bytes.get(pos)? {
                    b'"' => return Some((String::from_utf8(value).ok()?, pos + 1)),
                    b'\\' => {
                        let (byte, next) = unescape(bytes, pos)?;
                        value.push(byte);
                        pos = next;
                    }
                    &other => {
                        value.push(other);
                        pos += 1;
                    }
                }
            }
        }
        _ => {}
    }
    // Length of `value` up to its last byte that is not an unescaped space.
    let mut significant = 0;
    while let Some(&byte) = bytes.get(pos) {
        match byte {
            b',' | b';' | b'+' => break,
            b'\\' => {
                let (unescaped, next) = unescape(bytes, pos)?;
                value.push(unescaped);
                significant = value.len();
                pos = next;
            }
            b'"' | b'<' | b'>' | b'=' | 0 => return None,
            _ => {
                value.push(byte);
                if byte != b' ' {
                    significant = value.len();
                }
                pos += 1;
            }
        }
    }
    value.truncate(significant);
    Some((String::from_utf8(value).ok()?, pos))
}

/// The byte an escape at `pos` (a backslash) stands for, and the position after the escape.
fn unescape(bytes: &[u8], pos: usize) -> Option<(u8, usize)> {
    let first = *bytes.get(pos + 1)?;
    if let Some(second) = bytes.get(pos + 2) {
        if let (Some(hi), Some(lo)) = (hex(first), hex(*second)) {
            return Some((hi << 4 | lo, pos + 3));
        }
    }
    // Any other escaped byte stands for itself (RFC 4514 allows only specials here; being
    // lenient costs nothing for a comparison key).
    Some((first, pos + 2))
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

fn skip_spaces(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos) == Some(&b' ') {
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) -> bool {
        DnKey::new(a) == DnKey::new(b)
    }

    #[test]
    fn case_spaces_and_escapes_do_not_change_the_key() {
        assert!(same(
            "CN=Smith\\, John,OU=Users,O=x,DC=jumpcloud,DC=com",
            "cn=smith\\2c john, ou=users, o=X, dc=JumpCloud, dc=com"
        ));
        assert!(same("cn=Zoë Ångström,ou=Users", "cn=zoË ånGström,ou=users"));
        assert!(same("cn=Zo\\C3\\AB,ou=a", "cn=Zoë,ou=a"));
        assert!(same("uid=a+cn=b,ou=c", "cn=B+uid=A,ou=c"));
        assert!(same("cn=\"a,b\",ou=c", "cn=a\\,b,ou=c"));
        assert!(same("cn=a ,ou=c", "cn=a,ou=c"));
    }

    #[test]
    fn different_names_get_different_keys() {
        assert!(!same("cn=a\\ ,ou=c", "cn=a,ou=c"));
        assert!(!same("cn=a,ou=c", "cn=a,ou=d"));
        assert!(!same("cn=a\\,ou=c", "cn=a,ou=c"));
        assert!(!same("", "cn=a"));
    }

    #[test]
    fn validity_follows_rfc_4514() {
        assert!(is_valid(""));
        assert!(is_valid("ou=Users,o=5f0c,dc=jumpcloud,dc=com"));
        assert!(is_valid("cn=Smith\\, John,ou=Users"));
        assert!(is_valid("1.3.6.1.4.1.1466.0=#04024869,dc=com"));
        assert!(!is_valid("Users"));
        assert!(!is_valid("cn=a,,dc=b"));
        assert!(!is_valid("*)(uid=*"));
        assert!(!is_valid("cn=a\\"));
    }

    #[test]
    fn an_invalid_dn_is_keyed_by_its_lowercased_text() {
        assert_eq!(DnKey::new(" Not A DN "), DnKey("not a dn".to_owned()));
    }
}
