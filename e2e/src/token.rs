//! A minimal Docker registry token service ("Docker token authentication", the
//! `WWW-Authenticate: Bearer realm=...,service=...` flow) for end-to-end tests.
//!
//! ```ignore
//! let ts = TokenServer::start(TokenAuthOpts::new("alice", "s3cret"));
//! // GET {ts.realm()}?service=...&scope=repository:busybox:pull with Basic alice:s3cret
//! //   -> 200 {"token": JWT, "access_token": JWT, "expires_in": 300, "issued_at": ...}
//! let jwt = ts.mint("busybox", &["pull"]); // or mint one directly
//! ```
//!
//! Usually started by [`crate::registry::Registry::start`] with
//! [`crate::registry::RegistryOpts::token`], which points distribution's
//! `auth: token` (realm, service, issuer, rootcertbundle) at it.
//!
//! Tokens are RS256 JWTs whose header carries the signing certificate (`x5c`, a
//! self-signed certificate that is also the registry's `rootcertbundle`). distribution 2.8
//! verifies the `x5c` chain against `rootcertbundle` (a self-signed leaf that is itself
//! in the bundle verifies), requires `iss` == issuer and `aud` == service, checks
//! `exp`/`nbf` (60 s leeway) and the signature, then grants exactly what `access` lists
//! (resource names match exactly; `*` is a wildcard only for actions).
//!
//! The key and certificate are made with the openssl CLI in a private temp dir; the
//! JWT signature (RSASSA-PKCS1-v1_5 with SHA-256, deterministic, byte-identical to
//! `openssl dgst -sha256 -sign key.pem`) is computed in-process with rustls' ring
//! signer. The server is a std thread (one short-lived thread per connection), so it
//! works whether or not the caller runs inside a tokio runtime. `Drop` stops it, joins
//! its threads and removes the temp dir.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::http::{base64, basic_auth_value};
use crate::pki::openssl;

/// Lifetime of issued tokens (`exp - iat`, and `expires_in` of the response).
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// Options for [`TokenServer::start`] (and [`crate::registry::RegistryOpts::token`]).
#[derive(Clone, Debug)]
pub struct TokenAuthOpts {
    /// The one account the token service knows (checked against `Authorization: Basic`).
    pub user: String,
    pub password: String,
    /// Requests without `Authorization` get a token granting only `pull` (of what they
    /// asked for). Requests with *wrong* Basic credentials are refused either way.
    pub allow_anonymous: bool,
    /// distribution's `auth.token.service`; the `aud` claim of every token.
    pub service: String,
    /// distribution's `auth.token.issuer`; the `iss` claim of every token.
    pub issuer: String,
}

impl Default for TokenAuthOpts {
    fn default() -> Self {
        TokenAuthOpts {
            user: "token-user".to_string(),
            password: "token-pass".to_string(),
            allow_anonymous: false,
            service: "berth-e2e-registry".to_string(),
            issuer: "berth-e2e-token-issuer".to_string(),
        }
    }
}

impl TokenAuthOpts {
    /// `user`/`password`, no anonymous access, default service and issuer.
    pub fn new(user: &str, password: &str) -> TokenAuthOpts {
        TokenAuthOpts {
            user: user.to_string(),
            password: password.to_string(),
            ..Default::default()
        }
    }
}

/// One request the token endpoint answered (see [`TokenServer::requests`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub method: String,
    /// Request target, e.g. `/token?scope=repository%3Abusybox%3Apull&service=...`.
    pub target: String,
    /// Decoded `service` parameter.
    pub service: Option<String>,
    /// Decoded `scope` parameters (one entry per space-separated scope).
    pub scopes: Vec<String>,
    /// `Some(user)` when the request carried valid Basic credentials.
    pub user: Option<String>,
    /// Whether the request carried an `Authorization` header at all.
    pub had_authorization: bool,
    /// HTTP status answered.
    pub status: u16,
}

/// A running token service; see the module docs.
pub struct TokenServer {
    addr: String,
    cert_path: PathBuf,
    key_path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    dir: Option<tempfile::TempDir>,
}

struct Shared {
    opts: TokenAuthOpts,
    signer: Box<dyn rustls::sign::Signer>,
    /// `x5c` header value: the certificate's DER, standard base64.
    x5c: String,
    jti: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
    /// Repositories the user was granted `push` on (see [`Shared::grant`]).
    pushed: Mutex<BTreeSet<String>>,
    stop: AtomicBool,
}

impl TokenServer {
    /// Creates the key and certificate, binds `127.0.0.1:<free port>` and starts serving.
    pub fn start(opts: TokenAuthOpts) -> TokenServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        assert!(
            !opts.user.contains(':'),
            "Basic auth user must not contain ':'"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-token-")
            .tempdir()
            .expect("create token server temp dir");
        let (cert_path, key_path) = make_signing_cert(dir.path());

        let key = PrivateKeyDer::from_pem_file(&key_path).expect("read token signing key");
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .expect("load RSA signing key")
            .choose_scheme(&[rustls::SignatureScheme::RSA_PKCS1_SHA256])
            .expect("RSA key supports RSA_PKCS1_SHA256");
        let cert = CertificateDer::from_pem_file(&cert_path).expect("read token certificate");

        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind token server");
        let addr = listener.local_addr().expect("local_addr").to_string();
        let shared = Arc::new(Shared {
            opts,
            signer,
            x5c: base64(&cert),
            jti: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            pushed: Mutex::new(BTreeSet::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("e2e-token-server".into())
            .spawn(move || serve(listener, s))
            .expect("spawn token server thread");
        TokenServer {
            addr,
            cert_path,
            key_path,
            shared,
            thread: Some(thread),
            dir: Some(dir),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// URL of the token endpoint, e.g. `http://127.0.0.1:PORT/token` (distribution's
    /// `auth.token.realm`).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The `aud` of issued tokens (distribution's `auth.token.service`).
    pub fn service(&self) -> &str {
        &self.shared.opts.service
    }

    /// The `iss` of issued tokens (distribution's `auth.token.issuer`).
    pub fn issuer(&self) -> &str {
        &self.shared.opts.issuer
    }

    /// PEM of the self-signed signing certificate (distribution's
    /// `auth.token.rootcertbundle`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// PEM (PKCS#8) of the RSA signing key.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// `(user, password)` the endpoint accepts.
    pub fn credentials(&self) -> (String, String) {
        (
            self.shared.opts.user.clone(),
            self.shared.opts.password.clone(),
        )
    }

    /// Everything the endpoint answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.log.lock().expect("token log").clone()
    }

    /// Number of requests the endpoint answered so far.
    pub fn request_count(&self) -> usize {
        self.shared.log.lock().expect("token log").len()
    }

    /// A token for the configured user granting `actions` on `repository:<scope_repo>`,
    /// and nothing else (e.g. for a CRI `AuthConfig.registry_token`).
    pub fn mint(&self, scope_repo: &str, actions: &[&str]) -> String {
        let access = json!([{"type": "repository", "name": scope_repo, "actions": actions}]);
        self.shared
            .sign(&self.claims(&self.shared.opts.user, access))
    }

    /// Standard claims (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`) plus `access`,
    /// valid from now for [`TOKEN_LIFETIME_SECS`]. Edit and pass to [`Self::sign`] for
    /// odd tokens (expired, wrong audience, ...).
    pub fn claims(&self, sub: &str, access: Value) -> Value {
        self.shared.claims(sub, access, now_secs())
    }

    /// Signs arbitrary claims into a JWT with this server's key and `x5c` header.
    pub fn sign(&self, claims: &Value) -> String {
        self.shared.sign(claims)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("token server: removing {}: {e}", path.display());
            }
        }
    }
}

impl Shared {
    fn claims(&self, sub: &str, access: Value, now: u64) -> Value {
        let n = self.jti.fetch_add(1, Ordering::Relaxed);
        json!({
            "iss": self.opts.issuer,
            "sub": sub,
            "aud": self.opts.service,
            "exp": now + TOKEN_LIFETIME_SECS,
            "nbf": now,
            "iat": now,
            "jti": format!("berth-e2e-{}-{n}", std::process::id()),
            "access": access,
        })
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let signing_input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let sig = self
            .signer
            .sign(signing_input.as_bytes())
            .expect("RS256 sign");
        format!("{signing_input}.{}", base64url(&sig))
    }

    /// The `access` claim for `scopes`. Authenticated: every requested action; and if
    /// that includes `push` on a repository, also `pull` on every repository this user
    /// was granted `push` on before. The latter is needed by oci-client (our `Pusher`):
    /// it cross-mounts blobs (`POST .../blobs/uploads/?mount=D&from=R`) with the token
    /// it got for the target repository (scope `repository:<target>:pull,push`), while
    /// distribution also requires `pull` on `from` (Docker's client asks for both
    /// scopes). Anonymous: only `pull`, and only where requested.
    fn grant(&self, scopes: &[String], authenticated: bool) -> Value {
        let mut access = Vec::new();
        let mut named = BTreeSet::new();
        let mut pushing = false;
        for scope in scopes {
            let Some((typ, rest)) = scope.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| !a.is_empty() && (authenticated || *a == "pull"))
                .collect();
            if authenticated && typ == "repository" && actions.contains(&"push") {
                pushing = true;
                self.pushed.lock().expect("pushed").insert(name.to_string());
            }
            if typ == "repository" {
                named.insert(name.to_string());
            }
            access.push(json!({"type": typ, "name": name, "actions": actions}));
        }
        if pushing {
            for repo in self.pushed.lock().expect("pushed").iter() {
                if !named.contains(repo) {
                    access.push(json!({"type": "repository", "name": repo, "actions": ["pull"]}));
                }
            }
        }
        Value::Array(access)
    }

    /// Answers one parsed request: (status, extra headers, JSON body).
    fn handle(
        &self,
        method: &str,
        target: &str,
        authorization: Option<&str>,
    ) -> (u16, Vec<(&'static str, String)>, Value) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let params = parse_query(query);
        let service = params
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone());
        let scopes: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        let expected = basic_auth_value(&self.opts.user, &self.opts.password);
        let authenticated = authorization.is_some_and(|a| {
            a.split_once(' ').is_some_and(|(scheme, cred)| {
                scheme.eq_ignore_ascii_case("basic")
                    && expected.split_once(' ').map(|e| e.1) == Some(cred.trim())
            })
        });
        let (status, headers, body) = if path != "/token" {
            (404, vec![], json!({"details": "not found"}))
        } else if method != "GET" {
            (
                405,
                vec![("Allow", "GET".to_string())],
                json!({"details": "only GET"}),
            )
        } else if !authenticated && (authorization.is_some() || !self.opts.allow_anonymous) {
            (
                401,
                vec![(
                    "WWW-Authenticate",
                    "Basic realm=\"berth-e2e-token\"".to_string(),
                )],
                json!({"details": "authentication required"}),
            )
        } else {
            let now = now_secs();
            let sub = if authenticated { &self.opts.user } else { "" };
            let access = self.grant(&scopes, authenticated);
            let jwt = self.sign(&self.claims(sub, access, now));
            (
                200,
                vec![],
                json!({
                    "token": jwt,
                    "access_token": jwt,
                    "expires_in": TOKEN_LIFETIME_SECS,
                    "issued_at": rfc3339(now),
                }),
            )
        };
        self.log.lock().expect("token log").push(TokenRequest {
            method: method.to_string(),
            target: target.to_string(),
            service,
            scopes,
            user: authenticated.then(|| self.opts.user.clone()),
            had_authorization: authorization.is_some(),
            status,
        });
        (status, headers, body)
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        conns.retain(|c| !c.is_finished());
        let s = shared.clone();
        match std::thread::Builder::new()
            .name("e2e-token-conn".into())
            .spawn(move || {
                if let Err(e) = handle_conn(stream, &s)
                    && !s.stop.load(Ordering::SeqCst)
                {
                    eprintln!("token server: {e}");
                }
            }) {
            Ok(h) => conns.push(h),
            Err(e) => eprintln!("token server: spawn connection thread: {e}"),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// One request per connection (`Connection: close`).
fn handle_conn(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("request headers too large"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            // E.g. the wake-up connection from Drop.
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());

    let (status, headers, body) = shared.handle(&method, &target, authorization.as_deref());
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        resp.push_str(&format!("{k}: {v}\r\n"));
    }
    resp.push_str("\r\n");
    resp.push_str(&body);
    stream.write_all(resp.as_bytes())?;
    stream.flush()
}

/// Self-signed RSA-2048 certificate for signing tokens. Returns (cert.pem, key.pem).
fn make_signing_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cnf = dir.join("openssl.cnf");
    std::fs::write(
        &cnf,
        "[req]\n\
         distinguished_name = dn\n\
         prompt = no\n\
         x509_extensions = v3_signer\n\
         [dn]\n\
         CN = berth-e2e token signer\n\
         [v3_signer]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,digitalSignature,keyCertSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .expect("write openssl.cnf");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let p = |p: &Path| p.to_string_lossy().into_owned();
    openssl(&[
        "req",
        "-x509",
        "-config",
        &p(&cnf),
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p(&key),
        "-out",
        &p(&cert),
        "-days",
        "3650",
        "-sha256",
    ]);
    (cert, key)
}

/// base64url without padding (JWT).
pub fn base64url(data: &[u8]) -> String {
    base64(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// Decodes base64 (standard or URL alphabet, padding optional). `None` if malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Splits a JWT into its decoded (header, claims) JSON. Panics if malformed.
pub fn decode_jwt(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut part = || {
        let p = parts.next().unwrap_or_else(|| panic!("not a JWT: {jwt}"));
        let bytes = base64_decode(p).unwrap_or_else(|| panic!("bad base64url in JWT: {jwt}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("bad JSON in JWT ({e}): {jwt}"))
    };
    (part(), part())
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::http_request;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn base64_round_trip_and_query_decoding() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"\xff\xfe\xfd\xfc"] {
            assert_eq!(base64_decode(&base64url(data)).unwrap(), data);
            assert_eq!(base64_decode(&base64(data)).unwrap(), data);
        }
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(
            parse_query("scope=repository%3Abusy%2Fbox%3Apull%2Cpush&service=a+b&x"),
            vec![
                ("scope".into(), "repository:busy/box:pull,push".into()),
                ("service".into(), "a b".into()),
                ("x".into(), "".into()),
            ]
        );
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("%41%"), "A%");
    }

    #[test]
    fn jwt_is_signed_like_openssl_dgst_and_verifies() {
        let ts = TokenServer::start(TokenAuthOpts::default());
        let jwt = ts.mint("busybox", &["pull"]);
        let (header, claims) = decode_jwt(&jwt);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(claims["iss"], ts.issuer());
        assert_eq!(claims["aud"], ts.service());
        assert_eq!(claims["sub"], "token-user");
        assert_eq!(
            claims["access"],
            json!([{"type": "repository", "name": "busybox", "actions": ["pull"]}])
        );
        let exp = claims["exp"].as_u64().unwrap();
        assert_eq!(exp - claims["iat"].as_u64().unwrap(), TOKEN_LIFETIME_SECS);

        // x5c is the certificate's DER.
        let der = base64_decode(header["x5c"][0].as_str().unwrap()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(ts.cert_path())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(der, out.stdout);

        // The signature is what `openssl dgst -sha256 -sign key.pem` gives, and
        // `openssl dgst -verify` (with the certificate's public key) accepts it.
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = base64_decode(sig).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input_path = dir.path().join("input");
        std::fs::write(&input_path, input).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(ts.key_path())
            .arg(&input_path)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, sig);
        let pubkey = dir.path().join("pub.pem");
        let out = std::process::Command::new("openssl")
            .args(["x509", "-pubkey", "-noout", "-in"])
            .arg(ts.cert_path())
            .output()
            .unwrap();
        std::fs::write(&pubkey, out.stdout).unwrap();
        let sig_path = dir.path().join("sig");
        std::fs::write(&sig_path, &sig).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&pubkey)
            .arg("-signature")
            .arg(&sig_path)
            .arg(&input_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );

        let tmp = ts.cert_path().parent().unwrap().to_path_buf();
        drop(ts);
        assert!(!tmp.exists(), "{} left behind", tmp.display());
    }

    #[test]
    fn endpoint_grants_and_refuses() {
        let ts = TokenServer::start(TokenAuthOpts::new("alice", "pw"));
        let get = |target: &str, auth: Option<String>| {
            let mut h = vec![];
            if let Some(a) = &auth {
                h.push(("Authorization", a.as_str()));
            }
            http_request(ts.addr(), None, "GET", target, &h).unwrap()
        };
        let good = || Some(basic_auth_value("alice", "pw"));
        let q = "/token?service=berth-e2e-registry&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository:c:pull";

        let r = get(q, good());
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["token"], j["access_token"]);
        assert_eq!(j["expires_in"], TOKEN_LIFETIME_SECS);
        assert!(j["issued_at"].as_str().unwrap().ends_with('Z'));
        let (_, claims) = decode_jwt(j["token"].as_str().unwrap());
        assert_eq!(claims["sub"], "alice");
        assert_eq!(
            claims["access"],
            json!([
                {"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
                {"type": "repository", "name": "c", "actions": ["pull"]},
            ])
        );
        // A later push token also lets the user pull what it was granted push on (for
        // cross-repository blob mounts); a pull token grants just what was asked.
        let r = get("/token?scope=repository:d:pull,push", good());
        let (_, claims) = decode_jwt(r.json()["token"].as_str().unwrap());
        assert_eq!(
            claims["access"],
            json!([
                {"type": "repository", "name": "d", "actions": ["pull", "push"]},
                {"type": "repository", "name": "a/b", "actions": ["pull"]},
            ])
        );
        let r = get("/token?scope=repository:e:pull", good());
        let (_, claims) = decode_jwt(r.json()["token"].as_str().unwrap());
        assert_eq!(
            claims["access"],
            json!([{"type": "repository", "name": "e", "actions": ["pull"]}])
        );

        // Wrong password, wrong user, other scheme, none: 401.
        assert_eq!(get(q, Some(basic_auth_value("alice", "nope"))).status, 401);
        assert_eq!(get(q, Some(basic_auth_value("bob", "pw"))).status, 401);
        assert_eq!(get(q, Some("Bearer x".into())).status, 401);
        let r = get(q, None);
        assert_eq!(r.status, 401);
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
        assert_eq!(get("/other", good()).status, 404);

        let log = ts.requests();
        assert_eq!(ts.request_count(), 8);
        assert_eq!(log[0].user.as_deref(), Some("alice"));
        assert_eq!(log[0].service.as_deref(), Some("berth-e2e-registry"));
        assert_eq!(
            log[0].scopes,
            ["repository:a/b:pull,push", "repository:c:pull"]
        );
        assert_eq!(log[3].status, 401);
        assert!(log[3].had_authorization && log[3].user.is_none());
        assert!(!log[6].had_authorization);
    }

    #[test]
    fn works_inside_a_tokio_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ts = TokenServer::start(TokenAuthOpts::default());
            let addr = ts.addr().to_string();
            let auth = basic_auth_value("token-user", "token-pass");
            let r = tokio::task::spawn_blocking(move || {
                http_request(
                    &addr,
                    None,
                    "GET",
                    "/token?scope=repository:x:pull",
                    &[("Authorization", &auth)],
                )
                .unwrap()
            })
            .await
            .unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(ts.request_count(), 1);
        });
    }

    #[test]
    fn anonymous_gets_pull_only() {
        let ts = TokenServer::start(TokenAuthOpts {
            allow_anonymous: true,
            ..Default::default()
        });
        let r = http_request(
            ts.addr(),
            None,
            "GET",
            "/token?scope=repository:x:pull,push",
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let (_, claims) = decode_jwt(r.json()["token"].as_str().unwrap());
        assert_eq!(claims["sub"], "");
        assert_eq!(
            claims["access"],
            json!([{"type": "repository", "name": "x", "actions": ["pull"]}])
        );
        // Wrong credentials are still refused.
        let bad = basic_auth_value("token-user", "wrong");
        let r = http_request(
            ts.addr(),
            None,
            "GET",
            "/token?scope=repository:x:pull",
            &[("Authorization", &bad)],
        )
        .unwrap();
        assert_eq!(r.status, 401);
    }
}
