//! The TLS client side of the syslog sink (RFC 5425): a rustls configuration (ring, TLS 1.2
//! and 1.3) trusting either the system's CA certificates or, when the sink names one, only the
//! certificates of its `ca_file`; the collector's certificate must be valid for
//! `server_name`. No client certificate is presented (mutual TLS is not in yet).

use crate::webhook::SendError;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

/// A connector for `server_name`, trusting `ca_file` (PEM) or else the system's roots.
pub fn connector(
    ca_file: Option<&Path>,
    server_name: &str,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), SendError> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
        SendError::Setup(format!(
            "server_name `{server_name}` is neither a DNS name nor an IP address"
        ))
    })?;
    let roots = match ca_file {
        Some(path) => roots_of_file(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Setup(format!("cannot set up tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

fn roots_of_file(path: &Path) -> Result<rustls::RootCertStore, SendError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let pem = std::fs::read(path)
        .map_err(|e| SendError::Setup(format!("cannot read ca_file {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            SendError::Setup(format!(
                "ca_file {} is not PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(SendError::Setup(format!(
            "ca_file {} holds no PEM certificate",
            path.display()
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            SendError::Setup(format!(
                "ca_file {} holds an unusable certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, SendError> {
    let mut roots = rustls::RootCertStore::empty();
    // An unreadable system certificate only shrinks the trust store.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(SendError::Setup(
            "no system CA certificates found: install ca-certificates or set ca_file".into(),
        ));
    }
    Ok(roots)
}

/// A failed handshake with `address`, saying which setting to look at for the common causes.
pub fn handshake_failed(address: &str, server_name: &str, err: &std::io::Error) -> SendError {
    use rustls::CertificateError as Cert;
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let why = match tls {
        Some(rustls::Error::InvalidCertificate(Cert::UnknownIssuer)) => {
            "the collector's certificate is not signed by a trusted CA (unknown issuer; set \
             ca_file to the collector's CA)"
                .to_owned()
        }
        Some(rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        )) => format!(
            "the collector's certificate is not valid for `{server_name}` (set server_name \
             to a name the certificate lists)"
        ),
        Some(rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. })) => {
            "the collector's certificate has expired".to_owned()
        }
        Some(other) => other.to_string(),
        None => err.to_string(),
    };
    SendError::Transport(format!("tls handshake with {address} failed: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_a_setup_error_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let Err(SendError::Setup(m)) = connector(Some(&path), "localhost") else {
            panic!("accepted an empty ca_file");
        };
        assert!(
            m.contains("ca.pem") && m.contains("no PEM certificate"),
            "{m}"
        );
        let missing = dir.path().join("missing.pem");
        let Err(SendError::Setup(m)) = connector(Some(&missing), "localhost") else {
            panic!("accepted a missing ca_file");
        };
        assert!(m.contains("missing.pem"), "{m}");
    }

    #[test]
    fn an_unknown_issuer_names_the_setting_to_fix() {
        let err = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let m = handshake_failed("127.0.0.1:6514", "localhost", &err).to_string();
        assert!(m.contains("127.0.0.1:6514") && m.contains("ca_file"), "{m}");
    }
}
