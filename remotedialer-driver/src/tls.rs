//! rustls configurations for clients and servers, with the ring provider
//! chosen explicitly so they work whatever process-wide provider is
//! installed. Shared by the adapters: only the TLS stream type differs
//! (tokio-rustls, futures-rustls).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Which certificates a client trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsRoots {
    /// Mozilla's roots, compiled in (webpki-roots).
    #[default]
    WebPki,
    /// The operating system's store.
    Native,
    /// Only these CA certificates (PEM).
    CustomCa(Vec<u8>),
    /// The built-in roots plus these CA certificates (PEM).
    WebPkiAndCa(Vec<u8>),
    /// No verification at all. For tests only: anyone can impersonate the
    /// server.
    InsecureSkipVerify,
}

/// A TLS setup error.
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration: {0}")]
pub struct TlsError(pub String);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn add_pem_cas(store: &mut RootCertStore, pem: &[u8]) -> Result<(), TlsError> {
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsError(format!("bad CA PEM: {e}")))?;
        store
            .add(cert)
            .map_err(|e| TlsError(format!("bad CA certificate: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(TlsError("no certificate found in CA PEM".into()));
    }
    Ok(())
}

/// A client configuration trusting `roots`. Uses the ring provider
/// explicitly, so it works whatever process-wide provider is installed.
pub fn client_config(roots: &TlsRoots) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let mut store = RootCertStore::empty();
    let config = match roots {
        TlsRoots::InsecureSkipVerify => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
        other => {
            match other {
                TlsRoots::WebPki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                TlsRoots::Native => {
                    let found = rustls_native_certs::load_native_certs();
                    for cert in found.certs {
                        let _ = store.add(cert);
                    }
                }
                TlsRoots::CustomCa(pem) => add_pem_cas(&mut store, pem)?,
                TlsRoots::WebPkiAndCa(pem) => {
                    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    add_pem_cas(&mut store, pem)?;
                }
                TlsRoots::InsecureSkipVerify => {}
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// A server configuration from PEM certificate chain and private key.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError("no certificate found in PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError(format!("bad private key PEM: {e}")))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(e.to_string()))?;
    Ok(Arc::new(config))
}

/// [`server_config`] from files.
pub fn server_config_from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| TlsError(format!("{}: {e}", p.display())));
    server_config(&read(cert)?, &read(key)?)
}

#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
