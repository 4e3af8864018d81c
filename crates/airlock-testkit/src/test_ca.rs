//! A throw-away certificate authority for tests, made with the `openssl` command: its
//! certificate is a PEM file a client can trust, and it issues server certificates for the
//! names a test asks for (`localhost`, `127.0.0.1`, or a name that does not match on purpose).
//!
//! Keys are P-256, certificates live for 7 days, everything sits in a temporary directory
//! removed when the [`TestCa`] is dropped. What it does not do: revocation, intermediates or
//! client certificates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// What to do when `openssl` is missing.
const INSTALL_HINT: &str = "install Debian's package with `apt-get install -y openssl`";

/// A server certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: Vec<u8>,
    /// Its private key (PKCS#8), PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

/// A CA of a test's own; see the module docs.
#[derive(Debug)]
pub struct TestCa {
    dir: tempfile::TempDir,
    issued: std::sync::atomic::AtomicU32,
}

impl TestCa {
    /// Creates the CA's key and self-signed certificate (`CN=<common_name>`).
    pub fn new(common_name: &str) -> anyhow::Result<TestCa> {
        if common_name.is_empty() || common_name.contains(['/', '=', '\n']) {
            bail!("{common_name:?} is not a plain common name");
        }
        let dir = tempfile::Builder::new()
            .prefix("airlock-ca-")
            .tempdir()
            .context("cannot create a temporary directory for a test CA")?;
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "7",
                "-subj",
                &format!("/CN={common_name}"),
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )?;
        Ok(TestCa {
            dir,
            issued: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// The CA certificate (PEM), to give a client as the CA it trusts.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a server certificate whose subject alternative names are `names`: each one an
    /// IP address (`127.0.0.1`, `::1`) or a DNS name (`localhost`).
    pub fn issue_server(&self, names: &[&str]) -> anyhow::Result<IssuedCert> {
        let Some(first) = names.first() else {
            bail!("a server certificate needs at least one name");
        };
        let mut sans = Vec::new();
        for name in names {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            {
                bail!("{name:?} is not a host name or an IP address");
            }
            sans.push(match name.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{name}"),
                Err(_) => format!("DNS:{name}"),
            });
        }
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let stem = format!("server{n}");
        let ext = format!("{stem}.ext");
        std::fs::write(
            self.dir.path().join(&ext),
            format!(
                "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
        .context("cannot write the certificate extensions")?;
        let (key, csr, pem) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
        );
        openssl(
            self.dir.path(),
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={first}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        )?;
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &(n + 1).to_string(),
                "-days",
                "7",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        )?;
        let read = |file: &str| {
            std::fs::read(self.dir.path().join(file)).with_context(|| format!("cannot read {file}"))
        };
        Ok(IssuedCert {
            cert_pem: read(&pem)?,
            key_pem: read(&key)?,
        })
    }
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run openssl; {INSTALL_HINT}"))?;
    if !output.status.success() {
        bail!(
            "`openssl {}` failed ({}): {}",
            args[0],
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_server_certificates_for_the_names_asked() -> anyhow::Result<()> {
        let ca = TestCa::new("airlock test CA")?;
        let cert = ca.issue_server(&["localhost", "127.0.0.1"])?;
        assert!(String::from_utf8_lossy(&cert.cert_pem).contains("BEGIN CERTIFICATE"));
        assert!(String::from_utf8_lossy(&cert.key_pem).contains("PRIVATE KEY"));
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("s.pem"), &cert.cert_pem)?;
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in", "s.pem"])
            .current_dir(dir.path())
            .output()?;
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
            "{text}"
        );
        let verify = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(ca.cert_path())
            .arg(dir.path().join("s.pem"))
            .output()?;
        assert!(verify.status.success(), "{verify:?}");
        Ok(())
    }

    #[test]
    fn names_that_would_inject_openssl_syntax_are_refused() {
        let ca = TestCa::new("ca").expect("ca");
        assert!(ca.issue_server(&["a,DNS:evil"]).is_err());
        assert!(ca.issue_server(&[]).is_err());
    }
}
