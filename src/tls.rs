//! The cluster's certificates: a CA of the cluster's own, and each host's certificate signed
//! by it. Made here with rcgen and read with x509-parser; nothing shells out to openssl.
//! Private keys stay in memory and go straight to where they belong (the CA's to its file
//! beside the inventory, a host's over SSH into its 0600 file); nothing here prints them.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(what: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid(format!("{what}: {e}"))
}

/// The CA certificate that stands in for a cluster CA not made yet (no `tls:` in the
/// inventory and nothing in its default place): what `validate` and `render` check and show
/// until the first plan or apply makes the real one. Its key was thrown away when it was
/// made; a constant so that rendering stays byte for byte the same.
pub const STAND_IN_CA: &str = "-----BEGIN CERTIFICATE-----
MIIB4TCCAYigAwIBAgIBATAKBggqhkjOPQQDAjBHMUUwQwYDVQQDDDxwZ2hhIHN0
YW5kLWluIENBOiB0aGUgZmlyc3QgcGxhbiBvciBhcHBseSBtYWtlcyB0aGUgcmVh
bCBvbmUwIBcNMjYxMjAyMDc1NjUxWhgPMjEyNjExMDgwNzU2NTFaMEcxRTBDBgNV
BAMMPHBnaGEgc3RhbmQtaW4gQ0E6IHRoZSBmaXJzdCBwbGFuIG9yIGFwcGx5IG1h
a2VzIHRoZSByZWFsIG9uZTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABLcHSzpp
X5yVJeRodIpc3ruRxWederttC2sn9OsNCAJOOpPIkCxE5rtcddrhIQrc9sUgwqZ9
U9gNMc7QMxHqnJajYzBhMB0GA1UdDgQWBBSh5uydXbl4BGuSkPVk14OTCugKBjAf
BgNVHSMEGDAWgBSh5uydXbl4BGuSkPVk14OTCugKBjAPBgNVHRMBAf8EBTADAQH/
MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNHADBEAh9FkOqWfj0vDaQ/AB5v
PWOt/NRD6gyHnZgwdUQxvecsAiEAns5ce0/PtjVNVpTzfu+GjtiOuo3Fun1uL7Xa
4iQp/e0=
-----END CERTIFICATE-----
";

/// How long a CA pgha makes is valid by default: ten years (its hosts' certificates are
/// renewed long before; the CA itself is replaced by hand, rarely).
pub const CA_DAYS: i64 = 3650;

/// Make a CA for the cluster `name` in `dir` (made when missing): `ca.crt` and `ca.key` (0600,
/// the owner's alone). Refuses to replace either: every host's certificate hangs on them.
pub fn init_dir(
    dir: &std::path::Path,
    name: &str,
    days: i64,
) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    for p in [&cert, &key] {
        if p.exists() {
            return Err(TlsError::Invalid(format!(
                "{} exists: a cluster's CA is made once (its hosts' certificates hang on it); remove it first to start over",
                p.display()
            )));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| invalid(&format!("cannot make {}", dir.display()), e))?;
    let ca = new_ca(name, days)?;
    let write = |path: &std::path::Path, text: &str, mode: u32| -> Result<(), TlsError> {
        let cannot = |e: std::io::Error| invalid(&format!("cannot write {}", path.display()), e);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(cannot)?;
        f.write_all(text.as_bytes()).map_err(cannot)
    };
    // The key first: a certificate without its key would look like a finished CA.
    write(&key, &ca.key_pem, 0o600)?;
    write(&cert, &ca.cert_pem, 0o644)?;
    Ok((cert, key))
}

/// Whether `key_pem` is the private key of the certificate `cert_pem` (PKCS#8, as pgha reads
/// keys; `openssl pkcs8 -topk8 -nocrypt` converts others).
pub fn key_matches(cert_pem: &str, key_pem: &str) -> Result<bool, TlsError> {
    use rcgen::PublicKeyData;
    let key = KeyPair::from_pem(key_pem).map_err(|e| {
        invalid(
            "the key (pgha reads PKCS#8 keys: `openssl pkcs8 -topk8 -nocrypt` converts others)",
            e,
        )
    })?;
    let (_, pem) =
        parse_x509_pem(cert_pem.as_bytes()).map_err(|e| invalid("the certificate", e))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| invalid("the certificate", e))?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.der_bytes())
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A new CA for the cluster `name`, valid `days`.
pub fn new_ca(name: &str, days: i64) -> Result<Issued, TlsError> {
    let key = KeyPair::generate().map_err(|e| invalid("a CA key", e))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("pgha cluster {name} CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(days);
    let cert = params
        .self_signed(&key)
        .map_err(|e| invalid("the CA certificate", e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The cluster's CA, ready to sign.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// The CA from its certificate and key (PEM); refused when the key is not the
    /// certificate's, or the certificate is no CA.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| invalid("the CA key", e))?;
        let info = inspect_ca(cert_pem)?;
        if key.public_key_raw() != info.public_key.as_slice() {
            return Err(TlsError::Invalid(
                "the CA key is not the CA certificate's key".to_owned(),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| invalid("the CA certificate", e))?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server (and client) certificate for `names` and `ips`, valid `days`, with a new key.
    pub fn issue(&self, names: &[String], ips: &[IpAddr], days: i64) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(|e| invalid("a host key", e))?;
        let mut params = CertificateParams::default();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.clone());
        }
        for n in names {
            let dns = n
                .clone()
                .try_into()
                .map_err(|e| invalid(&format!("the name {n}"), e))?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(days);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| invalid("a host certificate", e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What a certificate says of itself, as far as pgha cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub serial: String,
    pub not_after: i64,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub is_ca: bool,
    /// Signed by the CA it was checked against.
    pub signed_by_ca: bool,
    public_key: Vec<u8>,
}

impl CertInfo {
    /// Whole days left until it expires (negative once it has).
    pub fn days_left(&self) -> i64 {
        (self.not_after - OffsetDateTime::now_utc().unix_timestamp()).div_euclid(86_400)
    }
}

fn info(cert: &x509_parser::certificate::X509Certificate<'_>, signed_by_ca: bool) -> CertInfo {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    CertInfo {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        not_after: cert.validity().not_after.timestamp(),
        dns,
        ips,
        is_ca: cert.is_ca(),
        signed_by_ca,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    }
}

/// The CA certificate itself.
pub fn inspect_ca(ca_pem: &str) -> Result<CertInfo, TlsError> {
    let (_, pem) =
        parse_x509_pem(ca_pem.as_bytes()).map_err(|e| invalid("the CA certificate", e))?;
    let ca = pem
        .parse_x509()
        .map_err(|e| invalid("the CA certificate", e))?;
    let signed = ca.verify_signature(None).is_ok();
    let out = info(&ca, signed);
    if !out.is_ca {
        return Err(TlsError::Invalid(format!(
            "the CA certificate ({}) is not a CA (basic constraints)",
            out.subject
        )));
    }
    Ok(out)
}

/// A host's certificate, checked against the cluster's CA.
pub fn inspect(cert_pem: &str, ca_pem: &str) -> Result<CertInfo, TlsError> {
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).map_err(|e| invalid("certificate", e))?;
    let cert = pem.parse_x509().map_err(|e| invalid("certificate", e))?;
    let (_, ca_pem) = parse_x509_pem(ca_pem.as_bytes()).map_err(|e| invalid("the CA", e))?;
    let ca = ca_pem.parse_x509().map_err(|e| invalid("the CA", e))?;
    let signed =
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok();
    Ok(info(&cert, signed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_certificate_is_signed_by_the_cluster_ca_and_names_the_host() {
        let ca = new_ca("t", 3650).expect("CA");
        let loaded = Ca::load(&ca.cert_pem, &ca.key_pem).expect("loads");
        let host = loaded
            .issue(&["pg1".to_owned()], &["10.0.0.1".parse().expect("ip")], 30)
            .expect("issued");
        let info = inspect(&host.cert_pem, &ca.cert_pem).expect("reads");
        assert!(info.signed_by_ca && !info.is_ca);
        assert_eq!(info.dns, ["pg1"]);
        assert_eq!(info.ips, ["10.0.0.1".parse::<IpAddr>().expect("ip")]);
        assert!(
            (29..=30).contains(&info.days_left()),
            "{}",
            info.days_left()
        );
        // Another CA did not sign it.
        let other = new_ca("other", 10).expect("CA");
        assert!(
            !inspect(&host.cert_pem, &other.cert_pem)
                .expect("reads")
                .signed_by_ca
        );
        // A key that is not the CA's is refused.
        assert!(Ca::load(&ca.cert_pem, &other.key_pem).is_err());
        assert!(
            inspect_ca(&host.cert_pem).is_err(),
            "a host certificate is no CA"
        );
    }
}
