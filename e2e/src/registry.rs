//! A real OCI registry for end-to-end tests: Debian's `docker-registry`
//! (github.com/docker/distribution 2.8) started as a child process on a loopback
//! address, with its filesystem storage in a private temporary directory.
//!
//! ```ignore
//! let reg = Registry::start(RegistryOpts::default());
//! // reg.addr == "127.0.0.1:PORT", plain HTTP, no auth
//! let resp = reg.get("/v2/", &[]);
//! assert_eq!(resp.status, 200);
//! ```
//!
//! The child is started with `PR_SET_PDEATHSIG = SIGKILL` from a dedicated, never-exiting
//! spawner thread, so it dies with the test process even if `Drop` never runs (abort,
//! SIGKILL); `Drop` kills it by PID, reaps it, and removes the temp dir.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// The suites reach the HTTP client through the registry they talk to.
pub use crate::http::{
    HttpResponse, base64, basic_auth_value, http_request, install_crypto_provider,
};
use crate::pki::openssl;
use crate::token::{TokenAuthOpts, TokenServer};

/// The Debian package's binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// bcrypt cost for the generated htpasswd file. distribution checks the password with
/// bcrypt on *every* request (no cache), so keep it at the minimum Go accepts (4):
/// cost 10 would add ~50-100 ms to every blob/manifest request.
const BCRYPT_COST: u32 = 4;

/// How long `start` waits for `GET /v2/` to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`Registry::start`].
#[derive(Clone, Debug)]
pub struct RegistryOpts {
    /// IP address to listen on (IPv4 or IPv6 literal). Default `127.0.0.1`.
    pub bind_ip: String,
    /// `(user, password)`: enables distribution's `auth: htpasswd` (bcrypt hash).
    /// The registry then answers unauthenticated requests with
    /// `401` + `WWW-Authenticate: Basic realm="berth-e2e"`.
    pub htpasswd: Option<(String, String)>,
    /// Serve HTTPS with a certificate for `bind_ip` (IP SAN; also DNS SAN `localhost`)
    /// signed by a freshly generated test CA (see [`Registry::tls_ca`]).
    pub tls: bool,
    /// Enable distribution's access log (Apache combined format, written to the
    /// registry's stdout; read it with [`Registry::access_log`]). Off by default.
    pub access_log: bool,
    /// Docker token authentication: starts a [`TokenServer`] with these options (kept in
    /// [`Registry::token_server`]) and configures distribution's `auth: token` with its
    /// realm, service, issuer and certificate. The registry then answers
    /// unauthenticated requests with `401` +
    /// `WWW-Authenticate: Bearer realm="http://127.0.0.1:P/token",service="..."`.
    /// [`Registry::auth`] is set to the token server's `(user, password)`, which
    /// oci-client (and so `Pusher::for_registry`) sends as Basic auth to the realm.
    /// Mutually exclusive with `htpasswd`.
    pub token: Option<TokenAuthOpts>,
}

impl Default for RegistryOpts {
    fn default() -> Self {
        RegistryOpts {
            bind_ip: "127.0.0.1".to_string(),
            htpasswd: None,
            tls: false,
            access_log: false,
            token: None,
        }
    }
}

/// A running `docker-registry` child process.
pub struct Registry {
    /// `IP:PORT` (`[IPv6]:PORT` for IPv6), usable as the registry host of an image
    /// reference, e.g. `format!("{}/busybox:latest", reg.addr)`.
    pub addr: String,
    /// Storage root (the filesystem driver's `rootdirectory`).
    pub root: PathBuf,
    /// `(user, password)` when started with htpasswd auth, or with token auth (the token
    /// server's account).
    pub auth: Option<(String, String)>,
    /// PEM of the test CA that signed the server certificate (trust this one), when `tls`.
    pub tls_ca: Option<PathBuf>,
    /// PEM of the server (leaf) certificate, when `tls`.
    pub tls_cert: Option<PathBuf>,
    /// The token service, when started with [`RegistryOpts::token`] (mint tokens with
    /// [`TokenServer::mint`], count its requests with [`TokenServer::request_count`]).
    pub token_server: Option<TokenServer>,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl RegistryOpts {
    /// Shorthand: plain HTTP with htpasswd auth for `user`/`password`.
    pub fn with_htpasswd(user: &str, password: &str) -> RegistryOpts {
        RegistryOpts {
            htpasswd: Some((user.to_string(), password.to_string())),
            ..Default::default()
        }
    }

    /// Shorthand: plain HTTP with token auth; the token service accepts `user`/`password`.
    pub fn with_token(user: &str, password: &str) -> RegistryOpts {
        RegistryOpts {
            token: Some(TokenAuthOpts::new(user, password)),
            ..Default::default()
        }
    }
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers 200 or 401.
    /// Panics (with the registry's stderr) if it does not come up.
    pub fn start(opts: RegistryOpts) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} not found: install the Debian package docker-registry"
        );
        // Picking a free port by binding :0 is racy; retry a few times if another
        // process grabbed it before the registry did.
        let mut last_err = String::new();
        for _ in 0..5 {
            match Self::try_start(&opts) {
                Ok(reg) => return reg,
                Err(e) if e.contains("address already in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_err}");
    }

    fn try_start(opts: &RegistryOpts) -> Result<Registry, String> {
        assert!(
            opts.htpasswd.is_none() || opts.token.is_none(),
            "RegistryOpts: htpasswd and token auth are mutually exclusive"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let root = dir.path().join("storage");
        std::fs::create_dir(&root).expect("create storage dir");

        let port = free_port(&opts.bind_ip);
        let addr = if opts.bind_ip.contains(':') {
            format!("[{}]:{port}", opts.bind_ip)
        } else {
            format!("{}:{port}", opts.bind_ip)
        };

        let mut config = String::new();
        config.push_str("version: 0.1\n");
        config.push_str("log:\n  level: warn\n  formatter: text\n");
        config.push_str(&format!(
            "  accesslog:\n    disabled: {}\n",
            !opts.access_log
        ));
        config.push_str("storage:\n");
        config.push_str(&format!(
            "  filesystem:\n    rootdirectory: {}\n",
            yaml_str(&root.to_string_lossy())
        ));
        config.push_str("  delete:\n    enabled: true\n");
        // No blob descriptor cache: every stat goes to the filesystem, so a test that
        // rewrites a blob file sees the registry serve exactly what is on disk.
        config.push_str("  maintenance:\n    uploadpurging:\n      enabled: false\n");
        config.push_str("http:\n");
        config.push_str(&format!("  addr: {}\n", yaml_str(&addr)));
        // Fixed upload-state secret (otherwise a random one is generated, with a warning).
        config.push_str("  secret: berth-e2e-not-secret\n");
        config.push_str("  headers:\n    X-Content-Type-Options: [nosniff]\n");

        let mut tls_ca = None;
        let mut tls_cert = None;
        if opts.tls {
            let (ca, cert, key) = make_tls_cert(dir.path(), &opts.bind_ip);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_str(&cert.to_string_lossy()),
                yaml_str(&key.to_string_lossy())
            ));
            tls_ca = Some(ca);
            tls_cert = Some(cert);
        }
        if let Some((user, password)) = &opts.htpasswd {
            assert!(
                !user.contains(':') && !user.contains('\n'),
                "htpasswd user must not contain ':' or newline"
            );
            let hash = bcrypt::hash(password, BCRYPT_COST).expect("bcrypt hash");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n",
                yaml_str(&htpasswd.to_string_lossy())
            ));
        }
        let token_server = opts.token.clone().map(TokenServer::start);
        if let Some(ts) = &token_server {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                yaml_str(&ts.realm()),
                yaml_str(ts.service()),
                yaml_str(ts.issuer()),
                yaml_str(&ts.cert_path().to_string_lossy())
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, &config).expect("write registry config");

        let stdout_path = dir.path().join("registry.stdout");
        let stderr_path = dir.path().join("registry.stderr");
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve")
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("create stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("create stderr file"));
        // distribution lets REGISTRY_* variables override the config file.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let child = spawn_with_pdeathsig(cmd).expect("spawn docker-registry");

        let mut reg = Registry {
            addr,
            root,
            auth: opts
                .htpasswd
                .clone()
                .or_else(|| token_server.as_ref().map(TokenServer::credentials)),
            tls_ca,
            tls_cert,
            token_server,
            child: Some(child),
            dir: Some(dir),
            stdout_path,
            stderr_path,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = reg.child.as_mut().expect("child");
            if let Some(status) = child.try_wait().expect("try_wait registry") {
                reg.child = None;
                return Err(format!(
                    "docker-registry exited during startup ({status}); config:\n{config}\nstderr:\n{}",
                    reg.stderr()
                ));
            }
            match reg.try_request("GET", "/v2/", &[]) {
                Ok(resp) if resp.status == 200 || resp.status == 401 => return Ok(reg),
                Ok(resp) => {
                    // Not expected, but keep trying until the deadline.
                    if Instant::now() > deadline {
                        return Err(format!(
                            "docker-registry at {} answered {} to GET /v2/; stderr:\n{}",
                            reg.addr,
                            resp.status,
                            reg.stderr()
                        ));
                    }
                }
                Err(e) => {
                    if Instant::now() > deadline {
                        return Err(format!(
                            "docker-registry at {} did not answer GET /v2/ within {:?} ({e}); stderr:\n{}",
                            reg.addr,
                            START_TIMEOUT,
                            reg.stderr()
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// PID of the registry process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("registry child").id()
    }

    /// The temp dir holding config, certs, htpasswd, logs and `storage/`.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("registry dir").path()
    }

    /// Filesystem-driver path of a stored blob:
    /// `<root>/docker/registry/v2/blobs/sha256/<first 2 hex>/<hex>/data`.
    /// Overwriting this file makes the registry serve bytes that do not match `digest`.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        assert!(hex.len() == 64, "bad digest {digest}");
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// What the registry wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The access log (registry stdout; only filled with `RegistryOpts::access_log`).
    /// Lines look like
    /// `127.0.0.1 - - [date] "GET /v2/busybox/blobs/sha256:... HTTP/1.1" 200 1234 "" "ua"`.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Number of access-log lines for `method` on a path containing `path_part`
    /// (e.g. a blob digest). Requires `RegistryOpts::access_log`.
    pub fn count_requests(&self, method: &str, path_part: &str) -> usize {
        let prefix = format!("\"{method} ");
        self.access_log()
            .lines()
            .filter(|l| {
                l.find(&prefix).is_some_and(|i| {
                    l[i + prefix.len()..]
                        .split(' ')
                        .next()
                        .is_some_and(|p| p.contains(path_part))
                })
            })
            .count()
    }

    /// Raw HTTP request without credentials (HTTPS trusting `tls_ca` when TLS is on).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.try_request(method, path, headers)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.url()))
    }

    /// `GET` without credentials.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.request("GET", path, headers)
    }

    /// `GET` with credentials: Basic from [`Registry::auth`] with htpasswd auth; with
    /// token auth a `Bearer` token minted for the repository in `path` (`pull`), see
    /// [`Registry::bearer_for_path`]; none if auth is off.
    pub fn get_authed(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let auth = match &self.token_server {
            Some(_) => self.bearer_for_path(path),
            None => self.auth.as_ref().map(|(u, p)| basic_auth_value(u, p)),
        };
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            h.push(("Authorization", a));
        }
        self.request("GET", path, &h)
    }

    /// With token auth: `Bearer <JWT>` minted directly (no request to the token
    /// endpoint) granting `pull` on the repository named in `path`
    /// (`/v2/<name>/{manifests,blobs,tags}/...`); `registry:catalog:*` for
    /// `/v2/_catalog`; no access at all for `/v2/`. `None` without token auth.
    pub fn bearer_for_path(&self, path: &str) -> Option<String> {
        let ts = self.token_server.as_ref()?;
        let path = path.split('?').next().unwrap_or(path);
        let rest = path.strip_prefix("/v2/").unwrap_or("");
        let parts: Vec<&str> = rest.split('/').collect();
        let access = match parts
            .iter()
            .rposition(|p| ["manifests", "blobs", "tags"].contains(p))
        {
            Some(i) if i > 0 => serde_json::json!([{
                "type": "repository", "name": parts[..i].join("/"), "actions": ["pull"]
            }]),
            _ if rest.starts_with("_catalog") => serde_json::json!([{
                "type": "registry", "name": "catalog", "actions": ["*"]
            }]),
            _ => serde_json::json!([]),
        };
        let user = self.auth.as_ref().map(|a| a.0.as_str()).unwrap_or("");
        Some(format!("Bearer {}", ts.sign(&ts.claims(user, access))))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<HttpResponse> {
        http_request(&self.addr, self.tls_ca.as_deref(), method, path, headers)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            // The child is not reaped yet, so the PID cannot have been reused.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("registry: removing {}: {e}", path.display());
            }
        }
    }
}

fn yaml_str(s: &str) -> String {
    // A JSON string literal is a valid YAML double-quoted scalar.
    serde_json::Value::String(s.to_string()).to_string()
}

fn free_port(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
    l.local_addr().expect("local_addr").port()
}

type SpawnReq = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` with `PR_SET_PDEATHSIG(SIGKILL)`. The death signal fires when the
/// *thread* that forked exits, so children are forked from one long-lived thread
/// rather than from (short-lived) test threads.
// pre_exec (prctl in the forked child) is unsafe.
#[allow(unsafe_code)]
pub fn spawn_with_pdeathsig(mut cmd: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = OnceLock::new();
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The parent died before prctl took effect.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnReq>();
            std::thread::Builder::new()
                .name("e2e-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("spawn spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .expect("spawner lock")
        .clone();
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx)).expect("spawner thread gone");
    reply_rx.recv().expect("spawner thread gone")
}

/// Generates a test CA and a server certificate for `ip` (IP SAN) and `localhost`
/// (DNS SAN) with the openssl CLI. Returns (ca.pem, server.pem, server.key).
fn make_tls_cert(dir: &Path, ip: &str) -> (PathBuf, PathBuf, PathBuf) {
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).expect("mkdir tls");
    let cnf = tls.join("openssl.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[req]\n\
             distinguished_name = dn\n\
             prompt = no\n\
             [dn]\n\
             CN = berth-e2e\n\
             [v3_ca]\n\
             basicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n\
             [v3_leaf]\n\
             basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = IP:{ip},DNS:localhost\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n"
        ),
    )
    .expect("write openssl.cnf");
    let ca_key = tls.join("ca.key");
    let ca = tls.join("ca.pem");
    let key = tls.join("server.key");
    let csr = tls.join("server.csr");
    let cert = tls.join("server.pem");
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-config", &p(&cnf), "-extensions", "v3_ca"][..],
            &ec,
            &[
                "-keyout",
                &p(&ca_key),
                "-out",
                &p(&ca),
                "-days",
                "3650",
                "-sha256",
                "-subj",
                "/CN=berth-e2e test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-new", "-config", &p(&cnf)][..],
            &ec,
            &[
                "-keyout",
                &p(&key),
                "-out",
                &p(&csr),
                "-subj",
                &format!("/CN={ip}"),
            ],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-set_serial",
        "2",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        &p(&cnf),
        "-extensions",
        "v3_leaf",
        "-out",
        &p(&cert),
    ]);
    (ca, cert, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_registry_starts_and_cleans_up() {
        let reg = Registry::start(RegistryOpts::default());
        assert!(reg.addr.starts_with("127.0.0.1:"));
        let resp = reg.get("/v2/", &[]);
        assert_eq!(resp.status, 200, "{}", reg.stderr());
        assert_eq!(
            resp.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
        assert!(reg.root.is_dir());
        let pid = nix::unistd::Pid::from_raw(reg.pid() as i32);
        let dir = reg.dir().to_path_buf();
        drop(reg);
        assert_eq!(
            nix::sys::signal::kill(pid, None),
            Err(nix::errno::Errno::ESRCH),
            "registry process still exists after drop"
        );
        assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    }

    #[test]
    fn htpasswd_registry_challenges_basic() {
        let reg = Registry::start(RegistryOpts::with_htpasswd("tester", "s3cret"));
        let resp = reg.get("/v2/", &[]);
        assert_eq!(resp.status, 401);
        let challenge = resp.header("www-authenticate").expect("challenge");
        assert!(challenge.starts_with("Basic "), "{challenge}");
        assert!(challenge.contains("realm=\"berth-e2e\""), "{challenge}");
        assert_eq!(reg.get_authed("/v2/", &[]).status, 200);
        let wrong = basic_auth_value("tester", "wrong");
        assert_eq!(reg.get("/v2/", &[("Authorization", &wrong)]).status, 401);
    }

    #[test]
    fn tls_registry_serves_https_with_generated_ca() {
        let reg = Registry::start(RegistryOpts {
            tls: true,
            ..Default::default()
        });
        assert_eq!(reg.scheme(), "https");
        let resp = reg.get("/v2/", &[]);
        assert_eq!(resp.status, 200);
        // Without trusting the CA the handshake must fail.
        let no_roots = reg.dir().join("no-roots.pem");
        std::fs::write(&no_roots, "").unwrap();
        assert!(http_request(&reg.addr, Some(&no_roots), "GET", "/v2/", &[]).is_err());
        // Plain HTTP to the TLS port gets a 400 from Go's TLS server, not a registry answer.
        let plain = http_request(&reg.addr, None, "GET", "/v2/", &[]).expect("plain");
        assert_eq!(plain.status, 400);
        // curl, as an independent client, trusting only the generated CA.
        if Path::new("/usr/bin/curl").exists() {
            let out = Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(reg.tls_ca.as_ref().unwrap())
                .arg(format!("{}/v2/", reg.url()))
                .output()
                .expect("run curl");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "200",
                "curl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn other_loopback_ip_with_tls() {
        let reg = Registry::start(RegistryOpts {
            bind_ip: "127.0.0.2".into(),
            tls: true,
            ..Default::default()
        });
        assert!(reg.addr.starts_with("127.0.0.2:"), "{}", reg.addr);
        assert_eq!(reg.get("/v2/", &[]).status, 200);
    }

    #[test]
    fn access_log_counts_requests() {
        let reg = Registry::start(RegistryOpts {
            access_log: true,
            ..Default::default()
        });
        reg.get("/v2/", &[]);
        reg.get("/v2/nothere/manifests/latest", &[]);
        // The access log is written after the response; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while reg.count_requests("GET", "/v2/nothere/") == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            reg.count_requests("GET", "/v2/nothere/"),
            1,
            "{}",
            reg.access_log()
        );
        assert!(
            reg.access_log()
                .contains("\"GET /v2/nothere/manifests/latest HTTP/1.1\" 404")
        );
    }
}
