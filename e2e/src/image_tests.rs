//! Tests of `images` (tar layout, determinism) and end-to-end pushes of the standard
//! set to real docker-registry instances (plain, htpasswd, TLS, bearer-token auth).

use std::collections::BTreeMap;
use std::io::Read;

use crate::http::{HttpResponse, basic_auth_value, http_request};
use crate::images::*;
use crate::registry::{Registry, RegistryOpts};
use crate::token::{TokenAuthOpts, TokenServer, decode_jwt};

/// One parsed tar entry: (name bytes, type, mode, uid, gid, mtime, link name, size,
/// device, pax records, data).
#[derive(Debug, Clone)]
struct TarEntry {
    name: Vec<u8>,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<Vec<u8>>,
    dev: Option<(u32, u32)>,
    pax: BTreeMap<String, Vec<u8>>,
    data: Vec<u8>,
}

fn list_tar(tar: &[u8]) -> Vec<TarEntry> {
    let mut ar = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let h = e.header().clone();
        let mut pax = BTreeMap::new();
        if let Some(exts) = e.pax_extensions().expect("pax") {
            for ext in exts {
                let ext = ext.expect("pax record");
                pax.insert(
                    ext.key().expect("pax key").to_string(),
                    ext.value_bytes().to_vec(),
                );
            }
        }
        let dev = match h.entry_type() {
            tar::EntryType::Char | tar::EntryType::Block => Some((
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            )),
            _ => None,
        };
        let mut data = Vec::new();
        let name = e.path_bytes().to_vec();
        let link = e.link_name_bytes().map(|l| l.to_vec());
        e.read_to_end(&mut data).expect("entry data");
        out.push(TarEntry {
            name,
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            dev,
            pax,
            data,
        });
    }
    out
}

fn find<'a>(entries: &'a [TarEntry], name: &str) -> &'a TarEntry {
    entries
        .iter()
        .find(|e| e.name == name.as_bytes())
        .unwrap_or_else(|| {
            let names: Vec<String> = entries
                .iter()
                .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                .collect();
            panic!("{name} not in layer: {names:?}")
        })
}

#[test]
fn busybox_layer_layout() {
    let layer = busybox_layer();
    assert_eq!(layer.compression, Compression::Gzip);
    assert_eq!(layer.digest, sha256_digest(&layer.blob));
    let tar = layer.tar();
    assert_eq!(layer.diff_id, sha256_digest(&tar));
    let entries = list_tar(&tar);
    let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    for e in &entries {
        assert_eq!(e.mtime, FIXED_MTIME);
        if e.name != b"home/app/" {
            assert_eq!((e.uid, e.gid), (0, 0), "{:?}", e);
        }
    }
    let bb = find(&entries, "bin/busybox");
    assert_eq!(bb.kind, tar::EntryType::Regular);
    assert_eq!(bb.mode, 0o755);
    assert_eq!(bb.data, std::fs::read(BUSYBOX_BIN).unwrap());
    for a in ["sh", "ls", "cat", "echo", "id", "sleep", "true"] {
        let l = find(&entries, &format!("bin/{a}"));
        assert_eq!(l.kind, tar::EntryType::Symlink);
        assert_eq!(l.link.as_deref(), Some(&b"busybox"[..]));
    }
    assert_eq!(find(&entries, "tmp/").mode, 0o1777);
    assert_eq!(find(&entries, "tmp/").kind, tar::EntryType::Directory);
    let home = find(&entries, "home/app/");
    assert_eq!((home.uid, home.gid), (1000, 1000));
    assert_eq!(find(&entries, "etc/passwd").data, ETC_PASSWD.as_bytes());
    assert_eq!(find(&entries, "etc/group").data, ETC_GROUP.as_bytes());
    assert!(ETC_GROUP.contains("extra:x:2000:app"));
}

#[test]
fn whiteout_layers_layout() {
    let (lower, upper) = whiteout_layers();
    let lo = list_tar(&lower.tar());
    assert_eq!(find(&lo, "data/a").data, b"a\n");
    assert_eq!(find(&lo, "data/b").data, b"b\n");
    assert_eq!(find(&lo, "dir/x/old").data, b"old\n");
    let up = list_tar(&upper.tar());
    assert_eq!(find(&up, "data/.wh.a").kind, tar::EntryType::Regular);
    assert!(find(&up, "data/.wh.a").data.is_empty());
    let opq_pos = up
        .iter()
        .position(|e| e.name == b"dir/x/.wh..wh..opq")
        .unwrap();
    let new_pos = up.iter().position(|e| e.name == b"dir/x/new").unwrap();
    assert!(opq_pos < new_pos, "opaque marker precedes new content");
    let b_pos = up.iter().position(|e| e.name == b"data/b").unwrap();
    let hl_pos = up.iter().position(|e| e.name == b"data/hl").unwrap();
    assert!(b_pos < hl_pos, "hardlink after its target");
    let hl = &up[hl_pos];
    assert_eq!(hl.kind, tar::EntryType::Link);
    assert_eq!(hl.link.as_deref(), Some(&b"data/b"[..]));
    assert_eq!(find(&up, "fifo").kind, tar::EntryType::Fifo);
    let dev = find(&up, "dev-null-copy");
    assert_eq!(dev.kind, tar::EntryType::Char);
    assert_eq!(dev.dev, Some((1, 3)));
    assert_eq!(dev.mode, 0o666);
    let x = find(&up, "xattr-file");
    assert_eq!(
        x.pax.get("SCHILY.xattr.user.berth").map(Vec::as_slice),
        Some(&b"yes"[..])
    );
    assert_eq!(find(&up, "setuid-file").mode, 0o4755);
}

#[test]
fn hostile_and_long_names_are_written_verbatim() {
    let tar = build_tar(&[
        Entry::file("../escape", "x", 0o644).raw(),
        Entry::file("/abs-escape", "x", 0o644).raw(),
        Entry::symlink("link", "/tmp"),
        Entry::file("link/evil-file", "x", 0o644),
        Entry::hardlink("hl", "../../etc/passwd").raw(),
        Entry::file(&format!("d/{}", "n".repeat(150)), "long", 0o644),
        Entry::symlink("longlink", &format!("/{}", "t".repeat(120))),
        Entry::file("bigid", "", 0o600).owner(4_000_000_000, 4_000_000_001),
    ]);
    // Raw header bytes: the first header's name field is exactly "../escape".
    assert_eq!(&tar[..10], b"../escape\0");
    let entries = list_tar(&tar);
    let names: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "../escape".to_string(),
            "/abs-escape".to_string(),
            "link".to_string(),
            "link/evil-file".to_string(),
            "hl".to_string(),
            format!("d/{}", "n".repeat(150)),
            "longlink".to_string(),
            "bigid".to_string(),
        ]
    );
    assert_eq!(entries[2].link.as_deref(), Some(&b"/tmp"[..]));
    assert_eq!(entries[4].kind, tar::EntryType::Link);
    assert_eq!(entries[4].link.as_deref(), Some(&b"../../etc/passwd"[..]));
    assert_eq!(
        entries[6].link.as_deref(),
        Some(format!("/{}", "t".repeat(120)).as_bytes())
    );
    // tar-rs reads uid/gid from PAX only via pax_extensions; check the records.
    assert_eq!(entries[7].pax.get("uid").unwrap(), b"4000000000");
    assert_eq!(entries[7].pax.get("gid").unwrap(), b"4000000001");
}

#[test]
fn layers_and_configs_are_deterministic() {
    let a = BuiltLayer::from_entries(&busybox_layer_entries(), Compression::Gzip);
    let b = BuiltLayer::from_entries(&busybox_layer_entries(), Compression::Gzip);
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.digest, busybox_layer().digest);
    for c in [Compression::Zstd, Compression::None, Compression::GzipFast] {
        let x = BuiltLayer::from_entries(&busybox_layer_entries(), c);
        let y = BuiltLayer::from_entries(&busybox_layer_entries(), c);
        assert_eq!(x.digest, y.digest);
        assert_eq!(x.diff_id, a.diff_id, "same tar whatever the compression");
    }
    let (l1, u1) = whiteout_layers();
    let (l2, u2) = whiteout_layers();
    assert_eq!((l1.digest, u1.digest), (l2.digest, u2.digest));
    assert_eq!(
        pseudo_random_bytes("x", 1000),
        pseudo_random_bytes("x", 1000)
    );
    assert_ne!(
        pseudo_random_bytes("x", 1000),
        pseudo_random_bytes("y", 1000)
    );
    let spec = ImageSpec::new(vec![a.clone()], ImageConfig::default());
    assert_eq!(spec.config_json(), spec.config_json());
    // Print the digests so two runs can be compared by hand.
    eprintln!("busybox layer {} diff_id {}", a.digest, a.diff_id);
    eprintln!("busybox config {}", sha256_digest(&spec.config_json()));
}

#[test]
fn random_data_is_incompressible() {
    let data = pseudo_random_bytes("incompressible", 256 * 1024);
    let gz = Compression::GzipFast.compress(&data);
    assert!(gz.len() > data.len(), "{} vs {}", gz.len(), data.len());
}

#[test]
fn tampering_keeps_gzip_valid() {
    let layer = BuiltLayer::from_entries(
        &[Entry::file("corrupt-data", CORRUPT_ORIGINAL, 0o644)],
        Compression::GzipStored,
    );
    let t = tamper_stored_gzip(&layer.blob, CORRUPT_ORIGINAL, CORRUPT_TAMPERED);
    assert_eq!(t.len(), layer.blob.len());
    assert_ne!(sha256_digest(&t), layer.digest);
    let entries = list_tar(&Compression::Gzip.decompress(&t).unwrap());
    assert_eq!(find(&entries, "corrupt-data").data, CORRUPT_TAMPERED);
}

// ---------------------------------------------------------------------------
// End to end against docker-registry
// ---------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn get(reg: &Registry, path: &str, accept: Option<&str>) -> HttpResponse {
    match accept {
        Some(a) => reg.get_authed(path, &[("Accept", a)]),
        None => reg.get_authed(path, &[]),
    }
}

/// Fetches manifest, config and layers of `img` and checks them against what was pushed.
/// Returns the layer blobs as served.
fn check_image(reg: &Registry, img: &PushedImage, by_digest: bool) -> Vec<Vec<u8>> {
    let reference = if by_digest {
        img.manifest_digest.clone()
    } else {
        img.tag.clone()
    };
    let path = format!("/v2/{}/manifests/{reference}", img.repository);
    let m = get(reg, &path, Some(&img.manifest_media_type));
    assert_eq!(m.status, 200, "GET {path}: {}", m.text());
    assert_eq!(
        m.header("content-type"),
        Some(img.manifest_media_type.as_str())
    );
    assert_eq!(
        m.header("docker-content-digest"),
        Some(img.manifest_digest.as_str())
    );
    assert_eq!(sha256_digest(&m.body), img.manifest_digest);
    assert_eq!(m.body.len() as u64, img.manifest_size);
    let mj = m.json();
    assert_eq!(mj["mediaType"], img.manifest_media_type.as_str());
    assert_eq!(mj["config"]["digest"], img.config_digest.as_str());

    let c = get(
        reg,
        &format!("/v2/{}/blobs/{}", img.repository, img.config_digest),
        None,
    );
    assert_eq!(c.status, 200);
    assert_eq!(sha256_digest(&c.body), img.config_digest);
    let cj = c.json();
    assert_eq!(cj["architecture"], img.architecture.as_str());
    assert_eq!(cj["os"], "linux");
    assert_eq!(cj["rootfs"]["type"], "layers");
    let diff_ids: Vec<String> = cj["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(diff_ids, img.diff_ids);

    let layers = mj["layers"].as_array().unwrap();
    assert_eq!(layers.len(), img.layer_digests.len());
    let mut blobs = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l["digest"], img.layer_digests[i].as_str());
        assert_eq!(l["mediaType"], img.layer_media_types[i].as_str());
        assert_eq!(l["size"].as_u64(), Some(img.layer_sizes[i]));
        let b = get(
            reg,
            &format!("/v2/{}/blobs/{}", img.repository, img.layer_digests[i]),
            None,
        );
        assert_eq!(b.status, 200);
        assert_eq!(b.body.len() as u64, img.layer_sizes[i]);
        blobs.push(b.body);
    }
    assert_eq!(img.compressed_size, img.layer_sizes.iter().sum::<u64>());
    blobs
}

fn compression_of(media_type: &str) -> Compression {
    match media_type {
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Compression::Gzip,
        OCI_LAYER_ZSTD => Compression::Zstd,
        OCI_LAYER_TAR => Compression::None,
        other => panic!("unexpected layer media type {other}"),
    }
}

/// Checks everything in the standard set as served by `reg`.
fn check_standard_set(reg: &Registry, set: &StandardSet) {
    for img in set.images() {
        let blobs = check_image(reg, img, false);
        check_image(reg, img, true);
        for (i, blob) in blobs.iter().enumerate() {
            let corrupted = img.repository == "corrupt" && i == blobs.len() - 1;
            if corrupted {
                assert_ne!(sha256_digest(blob), img.layer_digests[i]);
                let tar = Compression::Gzip
                    .decompress(blob)
                    .expect("still valid gzip");
                let entries = list_tar(&tar);
                assert_eq!(find(&entries, "corrupt-data").data, CORRUPT_TAMPERED);
                continue;
            }
            assert_eq!(
                sha256_digest(blob),
                img.layer_digests[i],
                "{}",
                img.repo_tag()
            );
            let tar = compression_of(&img.layer_media_types[i])
                .decompress(blob)
                .expect("decompress");
            assert_eq!(sha256_digest(&tar), img.true_diff_ids[i]);
        }
    }
    // Index.
    let idx = &set.multiarch;
    let r = get(
        reg,
        &format!("/v2/{}/manifests/{}", idx.repository, idx.tag),
        Some(OCI_INDEX),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    assert_eq!(sha256_digest(&r.body), idx.digest);
    let j = r.json();
    let ms = j["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0]["platform"]["architecture"], "amd64");
    assert_eq!(ms[1]["platform"]["architecture"], "arm64");
    assert_eq!(ms[1]["platform"]["variant"], "v8");
    for (m, img) in ms.iter().zip(&idx.manifests) {
        assert_eq!(m["digest"], img.manifest_digest.as_str());
        let blobs = check_image(reg, img, true);
        let tar = Compression::Gzip.decompress(blobs.last().unwrap()).unwrap();
        let entries = list_tar(&tar);
        assert_eq!(
            find(&entries, "platform").data,
            format!("{}\n", img.architecture).as_bytes()
        );
    }
    assert_ne!(
        idx.for_arch("amd64").layer_digests[1],
        idx.for_arch("arm64").layer_digests[1]
    );
    assert_eq!(idx.for_host().architecture, host_arch());

    // Relationships between images.
    let base = &set.base_layer_digest;
    assert_eq!(set.busybox.layer_digests, vec![base.clone()]);
    assert_eq!(
        set.library_busybox.manifest_digest,
        set.busybox.manifest_digest
    );
    assert_eq!(set.library_busybox.config_digest, set.busybox.config_digest);
    assert_eq!(set.library_busybox.repository, "library/busybox");
    assert_eq!(set.user.layer_digests, set.busybox.layer_digests);
    assert_ne!(set.user.config_digest, set.busybox.config_digest);
    assert_eq!(set.multilayer.layer_digests.len(), 5);
    assert_eq!(&set.multilayer.layer_digests[0], base);
    assert_eq!(&set.shared_a.layer_digests[0], base);
    assert_eq!(&set.shared_b.layer_digests[0], base);
    assert_ne!(set.shared_a.layer_digests[1], set.shared_b.layer_digests[1]);
    assert_eq!(set.whiteout.layer_digests.len(), 3);
    assert!(
        set.zstd
            .layer_media_types
            .iter()
            .all(|m| m == OCI_LAYER_ZSTD)
    );
    assert_eq!(set.zstd.diff_ids[0], set.busybox.diff_ids[0]);
    assert!(
        set.plain
            .layer_media_types
            .iter()
            .all(|m| m == OCI_LAYER_TAR)
    );
    assert_eq!(set.plain.diff_ids[0], set.busybox.diff_ids[0]);
    assert_eq!(set.docker_v2.manifest_media_type, DOCKER_MANIFEST);
    assert!(
        set.docker_v2
            .layer_media_types
            .iter()
            .all(|m| m == DOCKER_LAYER_GZIP)
    );
    assert_eq!(&set.docker_v2.layer_digests[0], base);
    assert_ne!(set.evil_diffid.diff_ids, set.evil_diffid.true_diff_ids);
    for img in set.images() {
        if img.repository != "evil-diffid" {
            assert_eq!(img.diff_ids, img.true_diff_ids, "{}", img.repo_tag());
        }
    }

    // Hostile layers as served.
    let first_entries = |img: &PushedImage| {
        let b = get(
            reg,
            &format!("/v2/{}/blobs/{}", img.repository, img.layer_digests[0]),
            None,
        );
        list_tar(&Compression::Gzip.decompress(&b.body).unwrap())
    };
    assert_eq!(first_entries(&set.evil_dotdot)[0].name, b"../escape");
    assert_eq!(first_entries(&set.evil_abs)[0].name, b"/abs-escape");
    let s = first_entries(&set.evil_symlink);
    assert_eq!(s[0].name, b"link");
    assert_eq!(s[0].link.as_deref(), Some(&b"/tmp"[..]));
    assert_eq!(s[1].name, b"link/evil-file");
    let h = first_entries(&set.evil_hardlink);
    assert_eq!(h[0].link.as_deref(), Some(&b"../../etc/passwd"[..]));
}

#[test]
fn standard_set_on_plain_registry() {
    let reg = Registry::start(RegistryOpts::default());
    let set = runtime().block_on(push_standard_set(&reg));
    check_standard_set(&reg, &set);
    assert!(
        set.busybox
            .reference()
            .starts_with(&format!("{}/busybox:latest", reg.addr))
    );

    // distribution 2.8 refuses to serve an OCI manifest/index to a client that does not
    // accept the OCI media type (404 MANIFEST_UNKNOWN), while Docker schema2 is served
    // for any Accept.
    let r = reg.get(
        "/v2/busybox/manifests/latest",
        &[("Accept", DOCKER_MANIFEST)],
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = reg.get(
        "/v2/multiarch/manifests/latest",
        &[("Accept", OCI_MANIFEST)],
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = reg.get("/v2/docker-v2/manifests/latest", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = reg.get(
        "/v2/busybox/manifests/latest",
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // HEAD gives the digest without the body.
    let r = reg.request(
        "HEAD",
        "/v2/busybox/manifests/latest",
        &[("Accept", OCI_MANIFEST)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(set.busybox.manifest_digest.as_str())
    );

    // The standard set is deterministic: a second registry gets identical digests.
    let reg2 = Registry::start(RegistryOpts::default());
    let set2 = runtime().block_on(push_standard_set(&reg2));
    let strip = |i: &PushedImage| {
        let mut i = i.clone();
        i.registry.clear();
        i
    };
    for (a, b) in set.images().into_iter().zip(set2.images()) {
        assert_eq!(strip(a), strip(b));
    }
    assert_eq!(set.multiarch.digest, set2.multiarch.digest);
}

#[test]
fn standard_set_with_htpasswd() {
    let reg = Registry::start(RegistryOpts::with_htpasswd("pusher", "pa55word"));
    let r = reg.get("/v2/", &[]);
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");

    let set = runtime().block_on(push_standard_set(&reg));
    check_standard_set(&reg, &set);

    // Unauthenticated reads are refused.
    let r = reg.get("/v2/busybox/manifests/latest", &[("Accept", OCI_MANIFEST)]);
    assert_eq!(r.status, 401);
    let r = reg.get(&format!("/v2/busybox/blobs/{}", set.base_layer_digest), &[]);
    assert_eq!(r.status, 401);

    // A pusher without credentials fails; one with wrong credentials too.
    let rt = runtime();
    let anon = Pusher::new(&reg.addr, None, None);
    let err = rt
        .block_on(anon.try_push_blob("busybox", b"anonymous"))
        .unwrap_err();
    assert!(err.contains("401"), "{err}");
    let wrong = Pusher::new(&reg.addr, Some(("pusher".into(), "wrong".into())), None);
    let err = rt
        .block_on(wrong.try_push_blob("busybox", b"wrong password"))
        .unwrap_err();
    assert!(err.contains("401"), "{err}");
}

#[test]
fn push_over_tls_with_htpasswd() {
    let reg = Registry::start(RegistryOpts {
        tls: true,
        htpasswd: Some(("tls-user".into(), "tls-pass".into())),
        ..Default::default()
    });
    assert_eq!(reg.get("/v2/", &[]).status, 401);
    let p = Pusher::for_registry(&reg);
    let img = runtime().block_on(p.push_image(
        "busybox:tls",
        &ImageSpec::new(vec![busybox_layer().clone()], ImageConfig::default()),
    ));
    let blobs = check_image(&reg, &img, false);
    assert_eq!(sha256_digest(&blobs[0]), busybox_layer().digest);
}

#[test]
fn multilayer_sizes_and_access_log() {
    let reg = Registry::start(RegistryOpts {
        access_log: true,
        ..Default::default()
    });
    let rt = runtime();
    let img = rt.block_on(push_multilayer(&reg, "big:latest", 3, 1 << 20));
    assert_eq!(img.layer_digests.len(), 4);
    for s in &img.layer_sizes[1..] {
        assert!(*s > 1 << 20, "incompressible: {s}");
    }
    let again = rt.block_on(push_multilayer(&reg, "big:latest", 3, 1 << 20));
    assert_eq!(again, img);
    let other = rt.block_on(push_multilayer(&reg, "big2:latest", 3, 1 << 20));
    assert_eq!(other.layer_digests[0], img.layer_digests[0]);
    assert_ne!(other.layer_digests[1], img.layer_digests[1]);
    check_image(&reg, &img, false);
    let d = &img.layer_digests[2];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while reg.count_requests("GET", d) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(reg.count_requests("GET", d), 1, "{}", reg.access_log());
}

/// `GET` with `Authorization: Bearer <jwt>`.
fn get_bearer(reg: &Registry, path: &str, jwt: &str) -> HttpResponse {
    let auth = format!("Bearer {jwt}");
    reg.get(
        path,
        &[("Accept", ACCEPT_ALL_MANIFESTS), ("Authorization", &auth)],
    )
}

/// Fetches a token from the realm like a Docker client would: `(status, token)`.
fn fetch_token(ts: &TokenServer, scope: &str, auth: Option<&str>) -> (u16, Option<String>) {
    let target = format!(
        "/token?service={}&scope={}",
        ts.service(),
        scope
            .replace(':', "%3A")
            .replace(',', "%2C")
            .replace('/', "%2F")
    );
    let mut h = vec![];
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    let r = http_request(ts.addr(), None, "GET", &target, &h).expect("token request");
    let token = (r.status == 200).then(|| r.json()["token"].as_str().unwrap().to_string());
    (r.status, token)
}

#[test]
fn standard_set_with_bearer_token_auth() {
    let reg = Registry::start(RegistryOpts::with_token("pusher", "pa55word"));
    let ts = reg.token_server.as_ref().expect("token server");
    assert_eq!(reg.auth, Some(("pusher".into(), "pa55word".into())));

    // Anonymous requests get a Bearer challenge pointing at the token server.
    let r = reg.get("/v2/", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                ts.realm(),
                ts.service()
            )
            .as_str()
        )
    );
    let r = reg.get("/v2/busybox/manifests/latest", &[]);
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("scope=\"repository:busybox:pull\""),
        "{challenge}"
    );
    assert_eq!(ts.request_count(), 0);

    // oci-client follows the challenge: Basic credentials to the realm, Bearer to the
    // registry.
    let set = runtime().block_on(push_standard_set(&reg));
    let log = ts.requests();
    assert!(!log.is_empty());
    assert!(
        log.iter()
            .all(|r| r.status == 200 && r.user.as_deref() == Some("pusher")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|r| r.scopes == ["repository:busybox:pull,push"]
                && r.service.as_deref() == Some(ts.service())),
        "{log:?}"
    );
    // Reads with minted pull tokens (Registry::get_authed).
    check_standard_set(&reg, &set);

    let manifest = format!("/v2/busybox/manifests/{}", set.busybox.manifest_digest);
    let blob = format!("/v2/busybox/blobs/{}", set.base_layer_digest);
    assert_eq!(reg.get(&manifest, &[("Accept", OCI_MANIFEST)]).status, 401);
    assert_eq!(reg.get(&blob, &[]).status, 401);

    // A minted pull token for the repository works; one for another repository does not.
    let pull = ts.mint("busybox", &["pull"]);
    let r = get_bearer(&reg, &manifest, &pull);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), reg.stderr());
    assert_eq!(sha256_digest(&r.body), set.busybox.manifest_digest);
    assert_eq!(get_bearer(&reg, &blob, &pull).status, 200);
    let other = ts.mint("user", &["pull"]);
    assert_eq!(
        get_bearer(&reg, "/v2/user/manifests/latest", &other).status,
        200
    );
    let r = get_bearer(&reg, &manifest, &other);
    assert_eq!(r.status, 401, "{}", r.text());
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    // push only is not pull.
    let push_only = ts.mint("busybox", &["push"]);
    assert_eq!(get_bearer(&reg, &manifest, &push_only).status, 401);

    // Tokens distribution must refuse: wrong audience, wrong issuer, expired, not yet
    // valid, signed by a key the registry does not trust, tampered claims.
    let access =
        serde_json::json!([{"type": "repository", "name": "busybox", "actions": ["pull"]}]);
    let base = ts.claims("pusher", access.clone());
    let now = base["iat"].as_u64().unwrap();
    for (field, value) in [
        ("aud", serde_json::json!("some-other-service")),
        ("iss", serde_json::json!("some-other-issuer")),
        ("exp", serde_json::json!(now - 3600)),
        ("nbf", serde_json::json!(now + 3600)),
    ] {
        let mut c = base.clone();
        c[field] = value;
        let r = get_bearer(&reg, &manifest, &ts.sign(&c));
        assert_eq!(r.status, 401, "{field}: {}", r.text());
    }
    assert_eq!(get_bearer(&reg, &manifest, &ts.sign(&base)).status, 200);
    let stranger = TokenServer::start(TokenAuthOpts::new("pusher", "pa55word"));
    let forged = stranger.sign(&base);
    assert_eq!(get_bearer(&reg, &manifest, &forged).status, 401);
    let (h, _) = decode_jwt(&forged);
    assert_eq!(h["x5c"].as_array().unwrap().len(), 1);
    let mut parts: Vec<&str> = pull.split('.').collect();
    let widened = crate::token::base64url(
        serde_json::json!({"access": [{"type": "repository", "name": "user", "actions": ["pull"]}]})
            .to_string()
            .as_bytes(),
    );
    parts[1] = &widened;
    assert_eq!(
        get_bearer(&reg, "/v2/user/manifests/latest", &parts.join(".")).status,
        401
    );

    // The Docker flow by hand: Basic to the realm, then Bearer.
    let good = basic_auth_value("pusher", "pa55word");
    let (status, token) = fetch_token(ts, "repository:busybox:pull", Some(&good));
    assert_eq!(status, 200);
    assert_eq!(get_bearer(&reg, &manifest, &token.unwrap()).status, 200);
    let (_, token) = fetch_token(ts, "repository:user:pull", Some(&good));
    assert_eq!(get_bearer(&reg, &manifest, &token.unwrap()).status, 401);

    // The token endpoint refuses wrong credentials and anonymous requests.
    let before = ts.request_count();
    let wrong = basic_auth_value("pusher", "wrong");
    assert_eq!(
        fetch_token(ts, "repository:busybox:pull", Some(&wrong)).0,
        401
    );
    let wrong_user = basic_auth_value("someone", "pa55word");
    assert_eq!(
        fetch_token(ts, "repository:busybox:pull", Some(&wrong_user)).0,
        401
    );
    assert_eq!(fetch_token(ts, "repository:busybox:pull", None).0, 401);
    assert_eq!(ts.request_count(), before + 3);

    // So pushers without (valid) credentials fail.
    let rt = runtime();
    let anon = Pusher::new(&reg.addr, None, None);
    let err = rt
        .block_on(anon.try_push_blob("busybox", b"anonymous"))
        .unwrap_err();
    assert!(err.contains("401"), "{err}");
    let wrong = Pusher::new(&reg.addr, Some(("pusher".into(), "wrong".into())), None);
    let err = rt
        .block_on(wrong.try_push_blob("busybox", b"wrong password"))
        .unwrap_err();
    assert!(
        err.contains("401") || err.to_lowercase().contains("auth"),
        "{err}"
    );
    assert!(
        ts.requests()
            .iter()
            .any(|r| r.status == 401 && r.had_authorization),
        "the wrong-password pusher asked the token endpoint"
    );

    // Nothing is left behind.
    let pid = nix::unistd::Pid::from_raw(reg.pid() as i32);
    let dirs = [
        reg.dir().to_path_buf(),
        ts.cert_path().parent().unwrap().to_path_buf(),
    ];
    drop(reg);
    assert_eq!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH)
    );
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn anonymous_pull_tokens_over_tls() {
    let reg = Registry::start(RegistryOpts {
        tls: true,
        token: Some(TokenAuthOpts {
            allow_anonymous: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let ts = reg.token_server.as_ref().unwrap();
    assert_eq!(reg.get("/v2/", &[]).status, 401);
    let p = Pusher::for_registry(&reg);
    let img = runtime().block_on(p.push_image(
        "busybox:tls",
        &ImageSpec::new(vec![busybox_layer().clone()], ImageConfig::default()),
    ));
    let blobs = check_image(&reg, &img, false);
    assert_eq!(sha256_digest(&blobs[0]), busybox_layer().digest);

    // Anonymous: a pull-only token, which reads but cannot write.
    let (status, token) = fetch_token(ts, "repository:busybox:pull,push", None);
    assert_eq!(status, 200);
    let token = token.unwrap();
    let (_, claims) = decode_jwt(&token);
    assert_eq!(claims["sub"], "");
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    let r = get_bearer(&reg, "/v2/busybox/manifests/tls", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    let auth = format!("Bearer {token}");
    let r = reg.request(
        "POST",
        "/v2/busybox/blobs/uploads/",
        &[("Authorization", &auth), ("Content-Length", "0")],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let anon = Pusher::new(&reg.addr, None, reg.tls_ca.as_deref());
    let err = runtime()
        .block_on(anon.try_push_blob("busybox", b"anonymous"))
        .unwrap_err();
    assert!(err.contains("401"), "{err}");
}

/// Benchmark-sized push: `cargo test --release -- --ignored big_multilayer`.
#[test]
#[ignore]
fn big_multilayer() {
    let reg = Registry::start(RegistryOpts::default());
    let t = std::time::Instant::now();
    let img = runtime().block_on(push_multilayer(&reg, "big:latest", 8, 16 << 20));
    eprintln!(
        "pushed {} ({} bytes) in {:?}",
        img.reference(),
        img.compressed_size,
        t.elapsed()
    );
    assert!(img.compressed_size > 8 * (16 << 20));
}
