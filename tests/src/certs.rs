//! Test certificates: a certificate authority of the test's own ([`TestCa`]) and server
//! certificates it issues for a host's IP address, written as PEM files.
//!
//! Every [`TestCa`] has a fresh key, so two of them are unrelated: a certificate one issued
//! does not verify against the other (for tests of a wrong CA).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate authority for one test, its certificate in a PEM file of its own directory.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    pem_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// A server certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// The certificate chain: the leaf alone.
    pub cert: PathBuf,
    /// The private key (PKCS#8).
    pub key: PathBuf,
}

/// A distinguished name with only a common name.
fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

impl TestCa {
    /// Makes a CA named `name` (its common name) with a fresh key.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        let dir = tempfile::Builder::new()
            .prefix("dvol-ca-")
            .tempdir()
            .expect("tempdir");
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, cert.pem()).expect("write CA certificate");
        TestCa {
            cert,
            key,
            pem_path,
            _dir: dir,
        }
    }

    /// The CA certificate's PEM file (what clients trust).
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// Issues a server certificate whose only subjectAltName is `ip`, and writes it and its
    /// key to `dir` as `<ip>.crt` and `<ip>.key`.
    pub fn issue_for_ip(&self, ip: impl Into<IpAddr>, dir: &Path) -> ServerCert {
        let ip = ip.into();
        let key = KeyPair::generate().expect("generate server key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("server parameters");
        params.distinguished_name = common_name(&ip.to_string());
        params.subject_alt_names = vec![SanType::IpAddress(ip)];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign server certificate");
        let written = ServerCert {
            cert: dir.join(format!("{ip}.crt")),
            key: dir.join(format!("{ip}.key")),
        };
        std::fs::write(&written.cert, cert.pem()).expect("write server certificate");
        std::fs::write(&written.key, key.serialize_pem()).expect("write server key");
        written
    }
}
