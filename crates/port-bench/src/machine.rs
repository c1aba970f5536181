//! The machine a run measured on, and the memory of a process, from `/proc`.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// What the process may use (`nproc`).
    pub nproc: usize,
    /// `processor` entries in /proc/cpuinfo.
    pub cpus: usize,
    pub model: String,
    pub mem_total_mib: Option<u64>,
    pub kernel: String,
    /// /proc/loadavg when the run started: other work on the machine shows here.
    pub loadavg_at_start: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            mem_total_mib: kib_field(&meminfo, "MemTotal").map(|kib| kib / 1024),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            loadavg_at_start: loadavg(),
        }
    }
}

pub fn loadavg() -> String {
    read_trimmed("/proc/loadavg")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The value of the first `key: value` line (`/proc/cpuinfo` style, tabs allowed).
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// A `Key:   1234 kB` line's number of KiB.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    field(text, key)?.split_whitespace().next()?.parse().ok()
}

/// How many 4 KiB overwrite + `fdatasync` rounds one file in `dir` manages per second
/// over `duration`: what a durable commit costs on this disk right now (other work on
/// the machine shows here too).
pub fn fsyncs_per_sec(dir: &Path, duration: std::time::Duration) -> std::io::Result<f64> {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join("fsync-probe");
    let file = std::fs::File::create(&path)?;
    let block = [0x5a_u8; 4096];
    file.write_all_at(&block, 0)?;
    file.sync_all()?;
    let start = std::time::Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < duration {
        file.write_all_at(&block, 0)?;
        file.sync_data()?;
        rounds += 1;
    }
    let rate = rounds as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// A process's resident memory now and at its peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of_pid(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Self::parse(&status)
    }

    fn parse(status: &str) -> Option<Self> {
        Some(Self {
            rss_kib: kib_field(status, "VmRSS")?,
            hwm_kib: kib_field(status, "VmHWM")?,
        })
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// The bytes of every file under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fsync_probe_counts_rounds() {
        let dir = std::env::temp_dir().join(format!("port-bench-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rate = fsyncs_per_sec(&dir, std::time::Duration::from_millis(20)).unwrap();
        assert!(rate > 0.0);
        assert!(!dir.join("fsync-probe").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn proc_fields_parse() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nprocessor\t: 1\n";
        assert_eq!(field(cpuinfo, "model name").as_deref(), Some("AMD EPYC"));
        assert_eq!(field(cpuinfo, "nothing"), None);
        let status = "Name:\tport-bench\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        let memory = Memory::parse(status).unwrap();
        assert_eq!(memory.rss_kib, 10240);
        assert_eq!(memory.hwm_kib, 20480);
        assert_eq!(memory.rss_mib(), 10.0);
        assert!(Memory::parse("Name:\tx\n").is_none());
    }
}
