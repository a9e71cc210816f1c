//! One apt source as pgha writes it: a deb822 `.sources` file whose `Signed-By` names a key
//! file of its own (never `trusted.gpg.d`, never a keyring every source trusts), and an
//! optional preferences file that pins package versions.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::render::MANAGED_HEADER;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// Its name in file names: `pgha-<name>.sources`.
    pub name: String,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// The public key, ASCII-armored (apt reads a `.asc` key file as such).
    pub key: String,
    /// Package -> version (apt's pattern: `2.28.*`), pinned at priority 1001.
    pub pin: BTreeMap<String, String>,
}

impl AptSource {
    pub fn key_file(&self) -> String {
        format!("/etc/apt/keyrings/pgha-{}.asc", self.name)
    }

    pub fn sources_file(&self) -> String {
        format!("/etc/apt/sources.list.d/pgha-{}.sources", self.name)
    }

    /// apt reads files of preferences.d without an extension or with `.pref`.
    pub fn preferences_file(&self) -> String {
        format!("/etc/apt/preferences.d/pgha-{}.pref", self.name)
    }

    /// The deb822 stanza.
    pub fn sources_text(&self) -> String {
        format!(
            "# {MANAGED_HEADER}\nTypes: deb\nURIs: {}\nSuites: {}\nComponents: {}\nSigned-By: {}\n",
            self.uris.join(" "),
            self.suites.join(" "),
            self.components.join(" "),
            self.key_file()
        )
    }

    /// The pins, one stanza per package; None without any. Priority 1001 installs the pinned
    /// version even over a newer one (and would downgrade to it).
    pub fn preferences_text(&self) -> Option<String> {
        if self.pin.is_empty() {
            return None;
        }
        let stanzas: Vec<String> = self
            .pin
            .iter()
            .map(|(package, version)| {
                format!("Package: {package}\nPin: version {version}\nPin-Priority: 1001\n")
            })
            .collect();
        Some(format!("# {MANAGED_HEADER}\n{}", stanzas.join("\n")))
    }

    /// What the playbook's `package sources` steps read (`apt_sources` in templates).
    pub fn vars(&self) -> Value {
        json!({
            "name": self.name,
            "key_file": self.key_file(),
            "key": self.key,
            "sources_file": self.sources_file(),
            "sources": self.sources_text(),
            "preferences_file": self.preferences_file(),
            "preferences": self.preferences_text(),
        })
    }
}

/// The first line of an ASCII-armored public key.
const ARMOR_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// A key file's bytes as an ASCII-armored public key: an armored one as it is, a binary one
/// (`gpg --export`, `gpg --dearmor`) armored (RFC 4880 section 6: base64 in lines of 64 and a
/// CRC-24 checksum). Err: why it is neither.
pub fn armored_key(bytes: &[u8]) -> Result<String, String> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if text.trim_start().starts_with(ARMOR_BEGIN) {
            if !text.contains("-----END PGP PUBLIC KEY BLOCK-----") {
                return Err("an armored key without its END line".to_owned());
            }
            let mut text = text.trim().to_owned();
            text.push('\n');
            return Ok(text);
        }
        if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            return Err("a private key: give the public key (`gpg --export --armor`)".to_owned());
        }
    }
    // A binary key starts with a public-key packet: tag 6, old format (0x98/0x99/0x9a) or
    // new format (0xc6).
    match bytes.first() {
        Some(0x98..=0x9a | 0xc6) => {}
        _ => return Err("not an OpenPGP public key (neither armored nor a binary key)".to_owned()),
    }
    let body = STANDARD.encode(bytes);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let crc = crc24(bytes).to_be_bytes();
    Ok(format!(
        "{ARMOR_BEGIN}\n\n{}\n={}\n-----END PGP PUBLIC KEY BLOCK-----\n",
        lines.join("\n"),
        STANDARD.encode(&crc[1..])
    ))
}

/// OpenPGP's CRC-24 (RFC 4880 section 6.1).
fn crc24(bytes: &[u8]) -> u32 {
    let mut crc: u32 = 0x00b7_04ce;
    for b in bytes {
        crc ^= u32::from(*b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4cfb;
            }
        }
    }
    crc & 0x00ff_ffff
}

#[cfg(test)]
mod tests {
    use super::{armored_key, crc24, AptSource};

    #[test]
    fn crc24_matches_the_rfc_check_value() {
        // The CRC-24/OPENPGP check value of "123456789".
        assert_eq!(crc24(b"123456789"), 0x0021_cf02);
    }

    #[test]
    fn a_binary_key_is_armored_and_an_armored_one_kept() {
        let binary = [0x99u8, 0x01, 0x0d, 0x04, 0x65];
        let armored = armored_key(&binary).expect("a key packet");
        assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBGU=\n="));
        assert!(armored.ends_with("-----END PGP PUBLIC KEY BLOCK-----\n"));
        assert_eq!(armored_key(armored.as_bytes()).expect("armored"), armored);
        assert!(armored_key(b"hello").is_err());
        assert!(armored_key(b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nx\n")
            .unwrap_err()
            .contains("private key"));
    }

    #[test]
    fn a_binary_key_armors_to_what_gpg_writes() {
        let binary = include_bytes!("../../../tests/fixtures/keys/test-repository.gpg");
        let gpg = include_str!("../../../tests/fixtures/keys/test-repository.asc");
        assert_eq!(armored_key(binary).expect("a key"), gpg);
    }

    #[test]
    fn the_sources_file_is_signed_by_its_own_key_and_pins_are_1001() {
        let s = AptSource {
            name: "timescaledb".into(),
            uris: vec!["https://packagecloud.io/timescale/timescaledb/debian/".into()],
            suites: vec!["bookworm".into()],
            components: vec!["main".into()],
            key: String::new(),
            pin: [(
                "timescaledb-2-postgresql-15".to_owned(),
                "2.28.*".to_owned(),
            )]
            .into(),
        };
        let text = s.sources_text();
        assert!(text.contains("\nSigned-By: /etc/apt/keyrings/pgha-timescaledb.asc\n"));
        assert!(!text.contains("trusted.gpg"));
        assert_eq!(
            s.preferences_text()
                .expect("pinned")
                .lines()
                .skip(1)
                .collect::<Vec<_>>(),
            [
                "Package: timescaledb-2-postgresql-15",
                "Pin: version 2.28.*",
                "Pin-Priority: 1001"
            ]
        );
    }
}
