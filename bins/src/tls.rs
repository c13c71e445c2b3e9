//! TLS 1.3 on the links between nodes (docs/SECURITY.md): the configurations rustls runs
//! with, built from the PEM files of `[tls]`, and the check that binds a peer's certificate
//! to the node name it speaks for.
//!
//! An edge verifies its gateway's certificate for `cloud.gateway_name` and, with
//! `tls.cert`, proves its own name; without one it sends `cloud.token` inside the
//! encrypted link. A gateway asks every edge for a certificate, checks it against the
//! fleet CA and the revocation list, and accepts an edge without one only by its token
//! ([`crate::link::GatewayAuth`]). A certificate authenticates exactly the names in its
//! subject alternative names: an edge whose hello claims another name is refused.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::TlsFiles;

/// What a gateway runs its accepted links with, as last loaded: the configuration and the
/// verifier in it, kept to check live links again after a reload.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Whether the certificate chain a live link presented would still be accepted: not
    /// revoked since, not expired, still chaining to the CA.
    pub fn still_accepts(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let (end_entity, intermediates) = chain.split_first().ok_or("no certificate")?;
        self.verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// ring's suites and key exchanges. rustls deprecates this provider because it has no
/// post-quantum key exchange; aws-lc-rs has one, but it would add megabytes to an edge-lite
/// binary that must stay under 5 MB and a C build to every cross-compile for the Pi. The
/// trade (docs/SECURITY.md): links recorded today could be read by a future quantum
/// computer.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The configuration an edge (or a middle tier) dials its gateway with.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, String> {
    let roots = roots(&files.ca)?;
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| format!("tls.ca {}: {e}", files.ca.display()))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3: {e}"))?
        .with_webpki_verifier(verifier);
    let config = match &files.identity {
        Some((cert, key)) => {
            let (chain, key) = identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls.cert {} with tls.key {}: {e}", cert.display(), key_path(files)))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn key_path(files: &TlsFiles) -> String {
    files.identity.as_ref().map(|(_, k)| k.display().to_string()).unwrap_or_default()
}

/// The configuration a gateway accepts edges with: its own certificate, and a verifier
/// that asks each edge for one (optional: an edge without one is held to its token).
pub fn server_config(files: &TlsFiles) -> Result<ServerTls, String> {
    let Some((cert, key)) = &files.identity else {
        return Err("tls.cert: missing: a gateway proves its name with a certificate".into());
    };
    let roots = roots(&files.ca)?;
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).allow_unauthenticated();
    if let Some(crl) = &files.crl {
        let lists = CertificateRevocationListDer::pem_file_iter(crl)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("tls.crl {}: {e}", crl.display()))?;
        if lists.is_empty() {
            return Err(format!(
                "tls.crl {}: no revocation list in it (expected PEM, `outpost certs`'s crl.pem)",
                crl.display()
            ));
        }
        verifier = verifier.with_crls(lists).only_check_end_entity_revocation();
    }
    let verifier = verifier.build().map_err(|e| format!("tls.ca {} / tls.crl: {e}", files.ca.display()))?;
    let (chain, key_der) = identity(cert, key)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3: {e}"))?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("tls.cert {} with tls.key {}: {e}", cert.display(), key.display()))?;
    Ok(ServerTls { config: Arc::new(config), verifier })
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, String> {
    let certs = read_certs("tls.ca", ca)?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| format!("tls.ca {}: not a CA certificate: {e}", ca.display()))?;
    }
    Ok(Arc::new(roots))
}

fn identity(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = read_certs("tls.cert", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls.key {}: {e}", key.display()))?;
    Ok((chain, key))
}

fn read_certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{field} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{field} {}: no certificate in it (expected PEM)", path.display()));
    }
    Ok(certs)
}

/// The name an edge dials its gateway by, for rustls: the gateway's node name.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|_| {
        format!("{name:?} cannot be a certificate's name; the gateway's node.name must be a DNS-like name")
    })
}

/// Whether `cert` (already verified against the CA) was issued for the node `name`.
pub fn certificate_is_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(server_name) = ServerName::try_from(name) else { return false };
    webpki::EndEntityCert::try_from(cert).is_ok_and(|c| c.verify_is_valid_for_subject_name(&server_name).is_ok())
}

#[cfg(all(test, feature = "tokio-shell"))]
mod tests {
    use super::*;
    use crate::certs;

    #[test]
    fn a_certificate_speaks_for_its_own_node_only() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = dir.path().join("ca");
        certs::create_ca(&ca, "test", 30).expect("a CA");
        certs::issue(&ca, "till_1.shop", 30, dir.path()).expect("issued");
        let pem = std::fs::read(dir.path().join("till_1.shop.pem")).expect("written");
        let cert = CertificateDer::from_pem_slice(&pem).expect("PEM");
        assert!(certificate_is_for(&cert, "till_1.shop"));
        for other in ["till_2.shop", "till_1", "shop", "*.shop", ""] {
            assert!(!certificate_is_for(&cert, other), "{other:?}");
        }
    }

    #[test]
    fn a_gateway_without_its_certificate_or_with_a_broken_file_says_which_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = dir.path().join("ca");
        certs::create_ca(&ca, "test", 30).expect("a CA");
        certs::issue(&ca, "gateway", 30, dir.path()).expect("issued");
        let files = |cert: &str, crl: Option<&str>| TlsFiles {
            ca: ca.join("ca.pem"),
            identity: Some((dir.path().join(cert), dir.path().join("gateway.key"))),
            crl: crl.map(|c| ca.join(c)),
        };
        server_config(&files("gateway.pem", Some("crl.pem"))).expect("a gateway's configuration");
        client_config(&files("gateway.pem", None)).expect("a dialling configuration");
        let missing = server_config(&files("nope.pem", None)).unwrap_err();
        assert!(missing.starts_with("tls.cert ") && missing.contains("nope.pem"), "{missing}");
        let not_a_crl = server_config(&files("gateway.pem", Some("ca.pem"))).unwrap_err();
        assert!(not_a_crl.starts_with("tls.crl ") && not_a_crl.contains("no revocation list"), "{not_a_crl}");
        let not_a_ca = client_config(&TlsFiles { ca: ca.join("crl.pem"), identity: None, crl: None }).unwrap_err();
        assert!(not_a_ca.starts_with("tls.ca ") && not_a_ca.contains("no certificate"), "{not_a_ca}");
    }
}
