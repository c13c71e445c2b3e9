//! `outpost certs`: a fleet's certificate authority, the certificates of its devices and
//! the list of those revoked (docs/SECURITY.md, Rolling certificates out).
//!
//! A CA is a directory: `ca.pem` (the certificate every node trusts, `tls.ca`), `ca.key`
//! (its private key, readable by its owner only; keep it off the devices), `issued.tsv`
//! (one line per certificate issued: serial, node name, expiry, revocation) and `crl.pem`
//! (the revocation list a gateway reads, `tls.crl`). A device certificate names its node
//! in its subject alternative name, and a peer's name must match it
//! ([`crate::tls`]), so one device cannot speak for another.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const ISSUED: &str = "issued.tsv";
const CRL: &str = "crl.pem";
/// How long a revocation list is valid for; `outpost certs revoke` writes a new one, and a
/// gateway does not refuse an old one (a revocation list that expired still revokes).
const CRL_VALID_DAYS: i64 = 365;
/// Bytes of a certificate's serial number (RFC 5280 allows up to 20).
const SERIAL_LEN: usize = 16;

/// Creates a fleet CA in `dir` (made if missing; refused if it holds a CA already), valid
/// for `days`. Returns the files written.
pub fn create_ca(dir: &Path, fleet: &str, days: u32) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for f in [CA_CERT, CA_KEY] {
        if dir.join(f).exists() {
            return Err(format!(
                "{} exists: {} already holds a CA; choose another --dir (a new CA means new certificates for every device)",
                dir.join(f).display(),
                dir.display()
            ));
        }
    }
    let key = KeyPair::generate().map_err(|e| format!("cannot generate the CA's key: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("Outpost fleet CA {fleet}"));
    params.distinguished_name.push(DnType::OrganizationName, fleet);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.key_identifier_method = KeyIdMethod::Sha256;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(serial_of(&key));
    let cert = params.self_signed(&key).map_err(|e| format!("cannot sign the CA's certificate: {e}"))?;
    let mut written = vec![
        write_new(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), true)?,
        write_new(&dir.join(CA_CERT), cert.pem().as_bytes(), false)?,
    ];
    write_replacing(&dir.join(ISSUED), ISSUED_HEADER.as_bytes())?;
    written.push(dir.join(ISSUED));
    written.push(write_crl(dir, &[])?);
    Ok(written)
}

const ISSUED_HEADER: &str = "# serial\tnode\tnot_after (unix s)\trevoked (unix s, or -)\n";

/// Issues a certificate for the node `name` from the CA in `ca_dir`, valid for `days` from
/// now; writes `<name>.pem` and `<name>.key` into `out`.
pub fn issue(ca_dir: &Path, name: &str, days: u32, out: &Path) -> Result<Vec<PathBuf>, String> {
    let now = OffsetDateTime::now_utc();
    issue_valid(ca_dir, name, now - Duration::hours(1), now + Duration::days(i64::from(days)), out)
}

/// [`issue`] with the validity given: tests issue certificates that expired or are not yet
/// valid with it.
pub fn issue_valid(
    ca_dir: &Path,
    name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    out: &Path,
) -> Result<Vec<PathBuf>, String> {
    rustls::pki_types::ServerName::try_from(name).map_err(|_| {
        format!("{name:?} cannot be a certificate's name: expected letters, digits, '-', '_' and '.', not starting with '-' or '.'")
    })?;
    let issuer = load_issuer(ca_dir)?;
    let key = KeyPair::generate().map_err(|e| format!("cannot generate a key: {e}"))?;
    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(|e| format!("{name:?}: {e}"))?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Every node both dials (an edge, a middle tier) and accepts (a gateway).
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let serial = serial_of(&key);
    params.serial_number = Some(serial.clone());
    let cert = params.signed_by(&key, &issuer).map_err(|e| format!("cannot sign {name:?}'s certificate: {e}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let written = vec![
        write_new(&out.join(format!("{name}.key")), key.serialize_pem().as_bytes(), true)?,
        write_new(&out.join(format!("{name}.pem")), cert.pem().as_bytes(), false)?,
    ];
    let line = format!("{}\t{name}\t{}\t-\n", hex::encode(serial.to_bytes()), not_after.unix_timestamp());
    append(&ca_dir.join(ISSUED), line.as_bytes())?;
    Ok(written)
}

/// Revokes every certificate issued for `name` and writes the CA's new `crl.pem`. Returns
/// how many were newly revoked and the list's path.
pub fn revoke(ca_dir: &Path, name: &str) -> Result<(usize, PathBuf), String> {
    // The CA must be whole before its index changes.
    load_issuer(ca_dir)?;
    let path = ca_dir.join(ISSUED);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (mut newly, mut known, mut rewritten) = (0, false, String::new());
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            let _ = writeln!(rewritten, "{line}");
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 4 {
            return Err(format!(
                "{}:{}: expected 4 tab-separated fields, found {}",
                path.display(),
                i + 1,
                fields.len()
            ));
        }
        if fields[1] == name {
            known = true;
            if fields[3] == "-" {
                newly += 1;
                let _ = writeln!(rewritten, "{}\t{}\t{}\t{now}", fields[0], fields[1], fields[2]);
                continue;
            }
        }
        let _ = writeln!(rewritten, "{line}");
    }
    if !known {
        return Err(format!("no certificate for {name:?} in {}: nothing to revoke", path.display()));
    }
    write_replacing(&path, rewritten.as_bytes())?;
    let revoked = revoked_entries(&rewritten, &path)?;
    Ok((newly, write_crl(ca_dir, &revoked)?))
}

/// The revoked certificates of an `issued.tsv`: (serial, when).
fn revoked_entries(text: &str, path: &Path) -> Result<Vec<(Vec<u8>, i64)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || format!("{}:{}: not serial, node, expiry and revocation", path.display(), i + 1);
        if fields.len() != 4 {
            return Err(bad());
        }
        if fields[3] != "-" {
            let serial = hex::decode(fields[0]).map_err(|_| bad())?;
            out.push((serial, fields[3].parse().map_err(|_| bad())?));
        }
    }
    Ok(out)
}

fn write_crl(ca_dir: &Path, revoked: &[(Vec<u8>, i64)]) -> Result<PathBuf, String> {
    let issuer = load_issuer(ca_dir)?;
    let now = OffsetDateTime::now_utc();
    let revoked_certs = revoked
        .iter()
        .map(|(serial, at)| RevokedCertParams {
            serial_number: SerialNumber::from_slice(serial),
            revocation_time: OffsetDateTime::from_unix_timestamp(*at).unwrap_or(now),
            reason_code: None,
            invalidity_date: None,
        })
        .collect();
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::days(CRL_VALID_DAYS),
        // Later lists have larger numbers: seconds since the epoch, as one CA writes them.
        crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer).map_err(|e| format!("cannot sign the revocation list: {e}"))?;
    let pem = crl.pem().map_err(|e| format!("cannot encode the revocation list: {e}"))?;
    let path = ca_dir.join(CRL);
    write_replacing(&path, pem.as_bytes())?;
    Ok(path)
}

fn load_issuer(ca_dir: &Path) -> Result<Issuer<'static, KeyPair>, String> {
    let read = |f: &str| {
        std::fs::read_to_string(ca_dir.join(f)).map_err(|e| {
            format!("cannot read {}: {e}; create a CA with `outpost certs ca --dir DIR`", ca_dir.join(f).display())
        })
    };
    let key = KeyPair::from_pem(&read(CA_KEY)?).map_err(|e| format!("{}: {e}", ca_dir.join(CA_KEY).display()))?;
    Issuer::from_ca_cert_pem(&read(CA_CERT)?, key).map_err(|e| format!("{}: {e}", ca_dir.join(CA_CERT).display()))
}

/// A serial number from the key's public bytes (random), positive as RFC 5280 asks.
fn serial_of(key: &KeyPair) -> SerialNumber {
    let raw = key.public_key_raw();
    let mut bytes: Vec<u8> = raw.iter().rev().take(SERIAL_LEN).copied().collect();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Writes a file that must not exist yet; a private key is readable by its owner only.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<PathBuf, String> {
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(if private { 0o600 } else { 0o644 }).open(path).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    format!("{} exists; remove it or write elsewhere (--out)", path.display())
                }
                _ => format!("cannot create {}: {e}", path.display()),
            },
        )?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Replaces a file whole: written beside it, synced, renamed over it.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, bytes, false)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

fn append(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}; is this the directory of `outpost certs ca`?", path.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_lists_exactly_the_revoked_nodes_certificates() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = dir.path().join("ca");
        create_ca(&ca, "test", 30).expect("a CA");
        assert!(create_ca(&ca, "test", 30).unwrap_err().contains("already holds a CA"));
        issue(&ca, "edge-1", 30, &dir.path().join("e1")).expect("issued");
        issue(&ca, "edge-2", 30, &dir.path().join("e2")).expect("issued");
        assert!(issue(&ca, "-bad", 30, dir.path()).unwrap_err().contains("cannot be a certificate's name"));
        assert_eq!(revoke(&ca, "edge-1").expect("revoked").0, 1);
        assert_eq!(revoke(&ca, "edge-1").expect("again").0, 0, "revoked once");
        assert!(revoke(&ca, "edge-9").unwrap_err().contains("nothing to revoke"));
        let issued = std::fs::read_to_string(ca.join(ISSUED)).expect("the index");
        let revoked = revoked_entries(&issued, &ca.join(ISSUED)).expect("parsed");
        assert_eq!(revoked.len(), 1);
        let edge1 = issued.lines().find(|l| l.contains("\tedge-1\t")).expect("edge-1's line");
        assert_eq!(hex::encode(&revoked[0].0), edge1.split('\t').next().expect("a serial"));
        let pem = std::fs::read(ca.join(CRL)).expect("the list");
        use rustls::pki_types::pem::PemObject as _;
        let der = rustls::pki_types::CertificateRevocationListDer::from_pem_slice(&pem).expect("PEM");
        let crl = webpki::OwnedCertRevocationList::from_der(der.as_ref()).expect("a valid list");
        let crl = webpki::CertRevocationList::from(crl);
        assert!(crl.find_serial(&revoked[0].0).expect("searchable").is_some());
        let edge2 = issued.lines().find(|l| l.contains("\tedge-2\t")).expect("edge-2's line");
        let serial2 = hex::decode(edge2.split('\t').next().expect("a serial")).expect("hex");
        assert!(crl.find_serial(&serial2).expect("searchable").is_none());
    }
}
