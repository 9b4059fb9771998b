//! `cargo xtask bench`: the enforcement path, measured in the real kernel, each figure beside
//! its baseline from the same run.
//!
//! 1. Per-lookup cost of the XDP program's lookup via `BPF_PROG_RUN`, with 0, 10k, 100k and 1M
//!    bans (90% single addresses, 10% prefixes), over a ring of 1M random source addresses
//!    (half of them banned), against the same lookup with the kernel's hash map in place of the
//!    host table, and with every ban in one LPM trie.
//! 1. (b) What byte counting and drop sampling cost per packet: the real program loaded with each
//!    of its features on and off (`ips_common::features`), same frames.
//! 2. Loading 1M bans into the maps (batched, as the enforcer does) against one syscall per
//!    entry; applying a 10k-entry diff.
//! 3. Resident memory of `ips run` with 1M decisions in its store, and its start-up time.
use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use aya::{
    EbpfLoader,
    maps::MapData,
    programs::{TestRun, TestRunOptions, Xdp},
};
use ips::{
    decisions::{DecisionStore, NewDecision, Origin, SqliteStore},
    enforcer::{Diff, KernelMaps, loader, sys},
    prefix::Prefix,
};
use ips_common::{capacity, maps as names};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn addr(&mut self) -> [u8; 4] {
        // Keep clear of 127/8 and 0/8 so the allowlist plays no part.
        let mut a = (self.next() as u32).to_be_bytes();
        a[0] = 1 + a[0] % 126;
        a
    }
}

/// `n` bans: 90% random /32, 10% random prefixes /16 to /28.
fn bans(n: usize, rng: &mut Rng) -> Vec<Prefix> {
    (0..n)
        .map(|i| {
            let a = rng.addr();
            let len = if i % 10 == 9 {
                16 + (rng.next() % 13) as u8
            } else {
                32
            };
            Prefix::new(std::net::IpAddr::from(a), len).expect("valid")
        })
        .collect()
}

fn bench_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(format!(
        "/sys/fs/bpf/ips-bench-{tag}-{}",
        std::process::id()
    ));
    let _ = loader::remove_pins(&dir);
    std::fs::create_dir_all(&dir).expect("bpffs dir (run through cargo xtask bench, as root)");
    dir
}

fn take_map(ebpf: &mut aya::Ebpf, name: &str) -> MapData {
    match ebpf
        .take_map(name)
        .unwrap_or_else(|| panic!("no map {name}"))
    {
        aya::maps::Map::LpmTrie(d) | aya::maps::Map::Array(d) | aya::maps::Map::PerCpuArray(d) => d,
        other => panic!("unexpected map type for {name}: {other:?}"),
    }
}

/// A ring of `BENCH_KEYS` source addresses: `banned_pct`% inside a ban (a random address of a
/// random ban), the rest random.
fn ring_of_sources(loaded: &[Prefix], banned_pct: u64, rng: &mut Rng) -> Vec<u8> {
    let mut vals = Vec::with_capacity(capacity::BENCH_KEYS as usize * 4);
    for _ in 0..capacity::BENCH_KEYS {
        let a = if !loaded.is_empty() && rng.next() % 100 < banned_pct {
            let p = loaded[(rng.next() % loaded.len() as u64) as usize];
            let o = p.octets();
            let base = u32::from_be_bytes([o[0], o[1], o[2], o[3]]);
            let host_bits = 32 - u32::from(p.prefix_len());
            let r = if host_bits > 0 {
                (rng.next() as u32) & (u32::MAX >> (32 - host_bits))
            } else {
                0
            };
            (base | r).to_be_bytes()
        } else {
            rng.addr()
        };
        vals.extend_from_slice(&a);
    }
    vals
}

struct LookupRow {
    /// The walk of the same ring with no lookup, same run.
    empty_ns: f64,
    entries: usize,
    banned_pct: u64,
    ring: u32,
    hybrid_ns: f64,
    /// The same lookup with the kernel's hash map in place of the host table.
    hash_ns: f64,
    lpm_ns: f64,
    /// Hits counted by the three programs over the same walk of the ring.
    hits: [u64; 3],
    program_ns: f64,
}

/// The whole program with 0 bans against an empty one, per packet.
struct WholeProgram {
    ips_ns: f64,
    pass_ns: f64,
}

fn lookup_costs(sizes: &[usize]) -> (Vec<LookupRow>, Option<WholeProgram>) {
    let mut zero_bans = None;
    let dir = bench_dir("lookup");
    let max = *sizes.iter().max().unwrap_or(&0) as u32;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&dir)
        .map_max_entries(names::HOST_V4, max.max(1))
        .map_max_entries(names::NET_V4, (max / 10).max(1))
        .map_max_entries(names::PART_V4, (max / 10).max(1))
        .map_max_entries(names::BENCH_LPM_V4, max.max(1))
        .load(loader::BENCH_PROGRAM)
        .expect("load bench object");
    for name in [
        "ips_bench_hybrid",
        "ips_bench_hash",
        "ips_bench_lpm",
        "ips_bench_empty",
        "ips_bench_pass",
    ] {
        let p: &mut Xdp = ebpf.program_mut(name).expect(name).try_into().expect("xdp");
        p.load().expect("verifier");
    }
    // The real program, sharing the pinned maps, for the cost of a whole packet.
    let mut real = loader::load(
        &dir,
        loader::Capacity {
            hosts: max.max(1),
            nets: (max / 10).max(1),
        },
    )
    .expect("load ips_xdp");
    let mut maps = KernelMaps::open(&dir).expect("maps");
    // As the enforcer does once it has reconciled: with 0 bans the program is told so.
    maps.sync_hints().expect("hints");
    // The daemon's default allowlist, as on a real host.
    let allow: Vec<Prefix> = ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|p| p.parse().expect("prefix"))
        .collect();
    maps.set_allowlist(&allow).expect("allowlist");
    let lpm_map = take_map(&mut ebpf, names::BENCH_LPM_V4);
    let keys_map = take_map(&mut ebpf, names::BENCH_KEYS_V4);
    let state_map = take_map(&mut ebpf, names::BENCH_STATE);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut rows = Vec::new();
    let mut loaded: Vec<Prefix> = Vec::new();
    for &n in sizes {
        // Grow the ban set to n entries, in both layouts.
        let more = bans(n - loaded.len(), &mut rng);
        let diff = Diff {
            upsert: more.iter().map(|p| (*p, 0)).collect(),
            ..Diff::default()
        };
        maps.apply(&diff).expect("load hybrid maps");
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for p in &more {
            keys.extend_from_slice(&u32::from(p.prefix_len()).to_ne_bytes());
            keys.extend_from_slice(&p.octets());
            values.extend_from_slice(&0u32.to_ne_bytes());
        }
        sys::update_batch(lpm_map.fd().as_fd(), &keys, &values, 8, 4).expect("load LPM-only map");
        loaded.extend(more);
        let mut run = |prog: &str, ring: u32| -> (f64, u64) {
            // Reset cursor and hit count, then one warm-up pass over the ring.
            let state = state_map.fd().as_fd();
            let zero = 0u64.to_ne_bytes();
            sys::update(state, &0u32.to_ne_bytes(), &zero).expect("reset");
            sys::update(state, &1u32.to_ne_bytes(), &zero).expect("reset");
            let mask = u64::from(ring - 1).to_ne_bytes();
            sys::update(state, &2u32.to_ne_bytes(), &mask).expect("mask");
            let p: &mut Xdp = ebpf.program_mut(prog).expect(prog).try_into().expect("xdp");
            let frame = [0u8; 64];
            let repeat = capacity::BENCH_KEYS / capacity::BENCH_BATCH; // 1M lookups
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(&frame);
            opts.repeat = repeat;
            p.test_run(opts).expect("warm-up");
            let mut best = f64::MAX;
            for _ in 0..3 {
                let mut opts = TestRunOptions::new();
                opts.data_in = Some(&frame);
                opts.repeat = repeat;
                let r = p.test_run(opts).expect("test run");
                best = best.min(r.duration.as_nanos() as f64 / f64::from(capacity::BENCH_BATCH));
            }
            let mut hits = [0u8; 8];
            sys::lookup(state, &1u32.to_ne_bytes(), &mut hits).expect("hits");
            (best, u64::from_ne_bytes(hits))
        };
        let mut per_ring = Vec::new();
        let mut cases = vec![(50, 1 << 16), (50, capacity::BENCH_KEYS)];
        if n == *sizes.last().unwrap_or(&0) {
            cases.extend([(0, capacity::BENCH_KEYS), (100, capacity::BENCH_KEYS)]);
        }
        for (banned_pct, ring) in cases {
            let vals = ring_of_sources(&loaded, banned_pct, &mut rng);
            let idx: Vec<u8> = (0..capacity::BENCH_KEYS)
                .flat_map(u32::to_ne_bytes)
                .collect();
            sys::update_batch(keys_map.fd().as_fd(), &idx, &vals, 4, 4).expect("load key ring");
            let (hybrid_ns, hybrid_hits) = run("ips_bench_hybrid", ring);
            let (hash_ns, hash_hits) = run("ips_bench_hash", ring);
            let (lpm_ns, lpm_hits) = run("ips_bench_lpm", ring);
            let (empty_ns, _) = run("ips_bench_empty", ring);
            per_ring.push(LookupRow {
                empty_ns,
                entries: n,
                banned_pct,
                ring,
                hybrid_ns,
                hash_ns,
                lpm_ns,
                hits: [hybrid_hits, lpm_hits, hash_hits],
                program_ns: 0.0,
            });
        }
        // Whole program on one clean IPv4 packet (parse + lookups + counter), hot in cache.
        let mut pkt = vec![0xffu8; 12];
        pkt.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        pkt.extend_from_slice(&[192, 0, 2, 1, 10, 0, 0, 1]);
        pkt.extend_from_slice(&[0u8; 8]);
        let once = |prog: &mut Xdp| {
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(&pkt);
            opts.repeat = 1_000_000;
            prog.test_run(opts).expect("run").duration.as_nanos() as f64
        };
        let program_ns = once(loader::xdp_program(&mut real).expect("prog"));
        if n == 0 {
            // Against a program that only returns XDP_PASS: runs alternate, best of 7 each.
            let (mut ips, mut pass) = (f64::MAX, f64::MAX);
            for _ in 0..7 {
                ips = ips.min(once(loader::xdp_program(&mut real).expect("prog")));
                let p: &mut Xdp = ebpf
                    .program_mut("ips_bench_pass")
                    .expect("pass")
                    .try_into()
                    .expect("xdp");
                pass = pass.min(once(p));
            }
            zero_bans = Some(WholeProgram {
                ips_ns: ips,
                pass_ns: pass,
            });
        }
        for mut row in per_ring {
            row.program_ns = program_ns;
            rows.push(row);
        }
    }
    drop(real);
    drop(ebpf);
    let _ = loader::remove_pins(&dir);
    (rows, zero_bans)
}

struct LoadRow {
    batched: Duration,
    per_entry: Duration,
    diff_10k: Duration,
}

fn load_costs(n: usize) -> LoadRow {
    let mut rng = Rng(0xfeed_beef_cafe_f00d);
    let entries = bans(n, &mut rng);
    let diff = Diff {
        upsert: entries.iter().map(|p| (*p, 0)).collect(),
        ..Diff::default()
    };
    let cap = loader::Capacity {
        hosts: n as u32 + 10_000,
        nets: n as u32 / 10 + 10_000,
    };

    // Batched, through the enforcer's own apply.
    let dir = bench_dir("load");
    let ebpf = loader::load(&dir, cap).expect("load");
    let mut maps = KernelMaps::open(&dir).expect("maps");
    let t = Instant::now();
    maps.apply(&diff).expect("apply");
    let batched = t.elapsed();
    // A 10k diff on top: 5k removed, 5k added.
    let d10 = Diff {
        delete: entries[..5000].to_vec(),
        upsert: bans(5000, &mut rng).into_iter().map(|p| (p, 0)).collect(),
    };
    let t = Instant::now();
    maps.apply(&d10).expect("apply diff");
    let diff_10k = t.elapsed();
    drop(maps);
    drop(ebpf);
    let _ = loader::remove_pins(&dir);

    // Baseline: one update syscall per entry.
    let dir = bench_dir("load1");
    let ebpf = loader::load(&dir, cap).expect("load");
    let host = MapData::from_pin(dir.join(names::HOST_V4)).expect("pin");
    let net = MapData::from_pin(dir.join(names::NET_V4)).expect("pin");
    let t = Instant::now();
    for p in &entries {
        if p.is_host() {
            sys::update(host.fd().as_fd(), &p.octets(), &0u32.to_ne_bytes()).expect("update");
        } else {
            let mut k = u32::from(p.prefix_len()).to_ne_bytes().to_vec();
            k.extend_from_slice(&p.octets());
            sys::update(net.fd().as_fd(), &k, &0u32.to_ne_bytes()).expect("update");
        }
    }
    let per_entry = t.elapsed();
    drop(ebpf);
    let _ = loader::remove_pins(&dir);
    LoadRow {
        batched,
        per_entry,
        diff_10k,
    }
}

struct DaemonRow {
    store_fill: Duration,
    ready: Duration,
    rss_mb: f64,
    hwm_mb: f64,
}

fn sh(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{args:?} failed");
}

fn status_kb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn daemon_memory(n: usize) -> DaemonRow {
    let id = std::process::id();
    let tmp = std::env::temp_dir().join(format!("ips-bench-daemon-{id}"));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let db = tmp.join("ips.db");
    let mut rng = Rng(0x0bad_cafe_0000_0001);
    let batch: Vec<NewDecision> = bans(n, &mut rng)
        .into_iter()
        .map(|value| NewDecision {
            value,
            origin: Origin::List("bench".into()),
            reason: "bench".into(),
            duration_ms: 24 * 3_600_000,
        })
        .collect();
    let t = Instant::now();
    {
        let mut store = SqliteStore::open(&db).expect("store");
        for chunk in batch.chunks(100_000) {
            store
                .upsert(chunk, ips::calendar::now_ms())
                .expect("upsert");
        }
    }
    let store_fill = t.elapsed();
    drop(batch);

    let ns = format!("ipsbench{id}");
    let ifa = format!("ipsb{}a", id % 1_000_000);
    let ifb = format!("ipsb{}b", id % 1_000_000);
    let pin = bench_dir("daemon");
    sh(&["ip", "netns", "add", &ns]);
    let mut cleanup = Cleanup {
        ns: ns.clone(),
        pin: pin.clone(),
        tmp: tmp.clone(),
        child: None,
    };
    sh(&[
        "ip", "link", "add", &ifa, "netns", &ns, "type", "veth", "peer", "name", &ifb, "netns", &ns,
    ]);
    sh(&["ip", "-n", &ns, "link", "set", &ifa, "up"]);
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    let config = tmp.join("ips.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[enforcer]\npin_dir = \"{}\"\nmax_hosts = {}\nmax_prefixes = {}\n",
            db.display(),
            pin.display(),
            n + 10_000,
            n / 10 + 10_000
        ),
    )
    .expect("config");
    let bin = std::env::var("IPS_BIN").unwrap_or_else(|_| "target/release/ips".into());
    let t = Instant::now();
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(&bin)
        .arg("--config")
        .arg(&config)
        .args(["run", "--iface", &ifa])
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("IPS_BENCH_VERBOSE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("ips run");
    let id = child.id();
    let child = cleanup.child.insert(child);
    let ready = loop {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg(&bin)
            .arg("--config")
            .arg(&config)
            .args(["-o", "json", "status"])
            .output()
            .expect("status");
        if String::from_utf8_lossy(&out.stdout).contains("\"daemon_running\": true") {
            break t.elapsed();
        }
        assert!(child.try_wait().expect("wait").is_none(), "ips run exited");
        assert!(t.elapsed() < Duration::from_secs(300), "ips run not ready");
        std::thread::sleep(Duration::from_millis(100));
    };
    if std::env::var_os("IPS_BENCH_VERBOSE").is_some() {
        eprintln!(
            "{}",
            std::fs::read_to_string(format!("/proc/{id}/smaps_rollup")).unwrap_or_default()
        );
    }
    let rss_mb = status_kb(id, "VmRSS:") / 1024.0;
    let hwm_mb = status_kb(id, "VmHWM:") / 1024.0;
    drop(cleanup);
    DaemonRow {
        store_fill,
        ready,
        rss_mb,
        hwm_mb,
    }
}

/// Stops the daemon and removes the bench's namespace, pins and files when dropped: also when
/// the bench panics half way.
struct Cleanup {
    ns: String,
    pin: PathBuf,
    tmp: PathBuf,
    child: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        for e in std::fs::read_dir(self.pin.join("links"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(e.path());
        }
        let _ = loader::remove_pins(&self.pin);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there are no test cases here.
    }
    assert!(Path::new("/sys/fs/bpf").exists(), "no /sys/fs/bpf");
    println!(
        "ips bench (kernel {})",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!();
    // IPS_BENCH_ONLY=lookup|load|daemon runs one section.
    let only = std::env::var("IPS_BENCH_ONLY").ok();
    let want = |s: &str| only.as_deref().is_none_or(|o| o == s);
    if want("lookup") {
        lookup_table();
    }
    if want("features") {
        feature_table();
    }
    let n = 1_000_000;
    if want("load") {
        load_table(n);
    }
    if want("daemon") {
        daemon_table(n);
    }
    if want("import") {
        import_table(n);
    }
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills a zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn import_table(n: usize) {
    use ips::{
        decisions::{
            DecisionService,
            profiles::{Profiles, ProfilesConfig},
        },
        enforcer::Enforcer,
    };
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let list = bans(n, &mut rng);
    let text: String = list.iter().map(|p| format!("{p}\n")).collect();
    let id = std::process::id();
    let tmp = std::env::temp_dir().join(format!("ips-bench-import-{id}"));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let dir = bench_dir("import");
    let cap = loader::Capacity {
        hosts: n as u32 + 10_000,
        nets: n as u32 / 10 + 10_000,
    };
    let ebpf = loader::load(&dir, cap).expect("load");
    let maps = KernelMaps::open(&dir).expect("maps");
    let store = SqliteStore::open(&tmp.join("ips.db")).expect("store");
    let profiles = Profiles::new(ProfilesConfig::default(), &[]);
    let mut service = DecisionService::new(Box::new(store), profiles).expect("service");
    let mut enforcer = Enforcer::new(maps);
    let now = ips::calendar::now_ms();
    // As `ips blocklist import` does it, prepare (on the API's thread), store, kernel.
    let mut import = |text: &str, now: i64| {
        let started = Instant::now();
        let allow = service.current_allowlist();
        let prepared = ips::blocklists::prepare(text, None, &allow);
        let prepare_ms = started.elapsed().as_millis() as u64;
        let (mut report, changes) = service
            .replace_list("bench", prepared, allow.version, 86_400_000, now)
            .expect("import");
        let kernel = Instant::now();
        enforcer.apply(&changes).expect("kernel");
        report.took.prepare_ms = prepare_ms;
        report.took.kernel_ms = kernel.elapsed().as_millis() as u64;
        report
    };
    let t = Instant::now();
    let report = import(&text, now);
    let first = t.elapsed();
    // Refresh with 1% of the entries replaced.
    let mut changed: Vec<Prefix> = list.clone();
    let k = n / 100;
    changed.truncate(n - k);
    changed.extend(bans(k, &mut rng));
    let text2: String = changed.iter().map(|p| format!("{p}\n")).collect();
    let cpu0 = cpu_time();
    let t = Instant::now();
    let refresh = import(&text2, now + 1000);
    let refresh_wall = t.elapsed();
    let refresh_cpu = cpu_time() - cpu0;
    let in_store = service.store().count_active(now + 2000).unwrap_or(0);
    drop((enforcer, service));
    drop(ebpf);
    let _ = loader::remove_pins(&dir);

    // Baseline: nft -f of the same list into an interval set, in a namespace of its own.
    let nft_time = nft_baseline(&list, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    println!("7. Importing a {n}-entry list end to end (parse, filter, aggregate, store, kernel)");
    println!(
        "   read {}, filtered out {} private / {} reserved, {} after aggregation, {} in the store",
        report.prepared.read,
        report.prepared.filtered.private,
        report.prepared.filtered.reserved,
        report.entries,
        in_store
    );
    println!("{:<38} {:>12} {:>16}", "", "ips", "nft -f (set)");
    println!(
        "{:<38} {:>12} {:>16}",
        "import 1M entries (wall)",
        ms(first),
        nft_time.map_or_else(|| "n/a".to_owned(), ms)
    );
    let steps = |t: &ips::decisions::ImportTimes| {
        format!(
            "prepare {} ms, store {} ms, kernel {} ms",
            t.prepare_ms, t.store_ms, t.kernel_ms
        )
    };
    println!("{:<38} {:>12}   ({})", "", "", steps(&report.took));
    println!(
        "{:<38} {:>12}   ({} added, {} removed; wall {})",
        "refresh with 1% changed (CPU)",
        ms(refresh_cpu),
        refresh.added,
        refresh.removed,
        ms(refresh_wall)
    );
    println!("{:<38} {:>12}   ({})", "", "", steps(&refresh.took));
    println!("   goals: import <= 2000 ms; refresh <= 200 ms of CPU");
}

fn nft_baseline(list: &[Prefix], tmp: &Path) -> Option<Duration> {
    if Command::new("nft").arg("--version").output().is_err() {
        return None;
    }
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in list {
        if p.is_v4() {
            v4.push(p.to_string());
        } else {
            v6.push(p.to_string());
        }
    }
    let mut text = String::from("table inet ipsbench {\n");
    text += &format!(
        "  set bl4 {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n",
        v4.join(", ")
    );
    if !v6.is_empty() {
        text += &format!(
            "  set bl6 {{ type ipv6_addr; flags interval; auto-merge; elements = {{ {} }} }}\n",
            v6.join(", ")
        );
    }
    text += "}\n";
    let file = tmp.join("list.nft");
    std::fs::write(&file, text).ok()?;
    let ns = format!("ipsnft{}", std::process::id());
    sh(&["ip", "netns", "add", &ns]);
    let t = Instant::now();
    let ok = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "-f"])
        .arg(&file)
        .status()
        .is_ok_and(|s| s.success());
    let took = t.elapsed();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    ok.then_some(took)
}

fn lookup_table() {
    println!("1. Per-lookup cost in the kernel (BPF_PROG_RUN, 1M lookups per figure, best of 3)");
    println!(
        "   sources: a ring of random addresses, the given share inside a ban, walked in order"
    );
    println!(
        "{:>9}  {:>5}  {:>6}  {:>20}  {:>17}  {:>12}  {:>8}  {:>5}  {:>21}  {:>14}",
        "bans",
        "ring",
        "banned",
        "ips (/24 index+table)",
        "hash map, no table",
        "LPM only",
        "speedup",
        "agree",
        "whole prog, 1 hot pkt",
        "no lookup"
    );
    let (rows, zero_bans) = lookup_costs(&[0, 10_000, 100_000, 1_000_000]);
    let clean_1m = rows
        .iter()
        .find(|r| r.entries == 1_000_000 && r.banned_pct == 0)
        .map(|r| r.hybrid_ns);
    for r in &rows {
        println!(
            "{:>9}  {:>5}  {:>5}%  {:>17.1} ns  {:>14.1} ns  {:>9.1} ns  {:>7.2}x  {:>5}  {:>18.1} ns  {:>11.1} ns",
            r.entries,
            if r.ring >= 1 << 20 {
                "1M".to_owned()
            } else {
                format!("{}k", r.ring >> 10)
            },
            r.banned_pct,
            r.hybrid_ns,
            r.hash_ns,
            r.lpm_ns,
            r.lpm_ns / r.hybrid_ns.max(0.001),
            if r.hits[0] == r.hits[1] && r.hits[0] == r.hits[2] {
                "yes".to_owned()
            } else {
                format!("NO {}/{}/{}", r.hits[0], r.hits[1], r.hits[2])
            },
            r.program_ns,
            r.empty_ns
        );
    }
    println!("   goal at 1M: <= 100 ns per lookup and >= 4x faster than LPM only");
    if let Some(clean) = clean_1m {
        let ratios: Vec<String> = rows
            .iter()
            .filter(|r| r.entries == 1_000_000 && r.banned_pct > 0)
            .map(|r| {
                format!(
                    "{}% of a {} ring {:.2}x",
                    r.banned_pct,
                    if r.ring >= 1 << 20 { "1M" } else { "64k" },
                    r.hybrid_ns / clean.max(0.001)
                )
            })
            .collect();
        println!(
            "   1M bans, against the clean-traffic row: {} (goal: <= 1.5x)",
            ratios.join(", ")
        );
    }
    println!("   \"no lookup\": the same walk of the ring without a lookup");
    if let Some(z) = zero_bans {
        println!(
            "   whole program, 0 bans, one clean packet (best of 7): ips {:.1} ns, a program that only returns XDP_PASS {:.1} ns: {:+.1}% (goal: within 10%)",
            z.ips_ns,
            z.pass_ns,
            (z.ips_ns / z.pass_ns.max(0.001) - 1.0) * 100.0
        );
    }
    println!();
}

/// An IPv4/UDP frame from `src`.
fn udp_frame(src: [u8; 4]) -> Vec<u8> {
    let mut pkt = vec![0xffu8; 12];
    pkt.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
    pkt.extend_from_slice(&src);
    pkt.extend_from_slice(&[10, 0, 0, 1]);
    pkt.extend_from_slice(&[0u8; 8]);
    pkt
}

/// ns per packet of the real program loaded with `features`, for a clean and a dropped frame
/// (best of 5 runs of 1M repeats each).
fn feature_cost(features: u32) -> (f64, f64) {
    let dir = bench_dir(&format!("feat{features}"));
    let mut ebpf = loader::load_with(
        &dir,
        loader::Capacity {
            hosts: 1024,
            nets: 1024,
        },
        features,
    )
    .expect("load ips_xdp");
    let mut maps = KernelMaps::open(&dir).expect("maps");
    let banned = [192, 0, 2, 1];
    let diff = Diff {
        upsert: vec![(Prefix::host(std::net::IpAddr::from(banned)), 0)],
        ..Diff::default()
    };
    maps.apply(&diff).expect("ban");
    let prog = loader::xdp_program(&mut ebpf).expect("prog");
    let run = |pkt: &[u8]| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(pkt);
            opts.repeat = 1_000_000;
            let r = prog.test_run(opts).expect("run");
            best = best.min(r.duration.as_nanos() as f64);
        }
        best
    };
    let clean = run(&udp_frame([198, 51, 100, 1]));
    let dropped = run(&udp_frame(banned));
    drop(maps);
    drop(ebpf);
    let _ = loader::remove_pins(&dir);
    (clean, dropped)
}

fn feature_table() {
    use ips_common::features;
    println!(
        "1b. What the program's accounting costs per packet (BPF_PROG_RUN, 1 hot frame, best of 5 x 1M)"
    );
    println!(
        "   a flood of one banned source: the sampler's budget (32 per CPU per 100 ms) is spent at once, so the dropped column is its steady cost"
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "program built with", "clean pkt", "dropped pkt"
    );
    let base = feature_cost(0);
    let rows = [
        ("packet counters only (baseline)", base),
        ("+ byte counters", feature_cost(features::BYTES)),
        (
            "+ drop sampling (ring buffer)",
            feature_cost(features::SAMPLE_DROPS),
        ),
        ("+ both (what `ips run` loads)", feature_cost(features::ALL)),
    ];
    for (name, (clean, dropped)) in rows {
        println!(
            "{name:<44} {clean:>9.1} ns {dropped:>9.1} ns   (+{:.1} / +{:.1} ns vs baseline)",
            clean - base.0,
            dropped - base.1
        );
    }
    println!("   goal: byte counting and sampling together add <= 10 ns per packet");
    println!();
}

fn load_table(n: usize) {
    let l = load_costs(n);
    println!("2. Loading bans into the kernel maps ({n} entries, 90% /32)");
    println!("{:<38} {:>12} {:>12}", "", "ips", "baseline");
    println!(
        "{:<38} {:>12} {:>12}  ({:.1}x; baseline = one syscall per entry)",
        "load 1M into empty maps",
        ms(l.batched),
        ms(l.per_entry),
        l.per_entry.as_secs_f64() / l.batched.as_secs_f64()
    );
    println!(
        "{:<38} {:>12}",
        "apply a 10k diff (5k out, 5k in)",
        ms(l.diff_10k)
    );
    println!("   goals: load <= 1000 ms, 10k diff <= 50 ms");
    println!();
}

fn daemon_table(n: usize) {
    let d = daemon_memory(n);
    println!("3. `ips run` with {n} decisions in its store");
    println!(
        "{:<38} {:>12}",
        "fill the SQLite store (10 x 100k tx)",
        ms(d.store_fill)
    );
    println!(
        "{:<38} {:>12}",
        "start to ready (load, reconcile)",
        ms(d.ready)
    );
    println!(
        "{:<38} {:>9.1} MB",
        "resident memory when ready (VmRSS)", d.rss_mb
    );
    println!(
        "{:<38} {:>9.1} MB",
        "peak resident memory (VmHWM)", d.hwm_mb
    );
    println!("   goal: <= 150 MB");
}
