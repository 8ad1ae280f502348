//! Releasing the code pages an agent touched only while it started.
//!
//! Most of an idle agent's resident set is code mapped from files: the
//! `roster` binary and the C library. Parsing the command line and the
//! configuration, loading certificates and opening the data directory touch
//! megabytes of code that an idle agent never runs again, yet every page once
//! touched stays in the process's page tables and counts in its RSS. Such a
//! page is unmodified and backed by its file, so the agent can drop its own
//! mapping of it (`madvise(MADV_DONTNEED)`): the page stays in the page cache,
//! shared with every other process that maps the file, and the next access to
//! it maps it again with a minor fault. What the agent runs while idle comes
//! back within seconds; the rest stays out of its RSS.
//!
//! Only mappings that are backed by a regular file, private, not writable and
//! hold no page of their own (`Anonymous: 0 kB` in `/proc/self/smaps`) are
//! released: there, dropping a page loses nothing. A mapping that holds a
//! page of its own (relocated read-only data, or a debugger's breakpoint in
//! code) is left alone, and so is everything anonymous (heap, stacks).
//!
//! Each release also asks the C allocator (glibc) to give the system back
//! the free pages of its heap (`malloc_trim`). What a burst allocated and
//! freed, such as the connections a forming cluster opens to nearly every
//! member and closes when they fall idle, otherwise stays resident.

use std::time::Duration;

/// When the first release happens after the agent starts: a start, the
/// join and the first push-pull are over by then in a healthy cluster.
pub const FIRST_RELEASE: Duration = Duration::from_secs(10);

/// How often the release is repeated afterwards, so code run only now and
/// then (a reload, a burst of reconnections) does not stay resident for the
/// agent's life.
pub const RELEASE_EVERY: Duration = Duration::from_secs(60);

/// One mapping of `/proc/self/smaps` that may be released.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    /// Resident kB when read.
    rss_kb: u64,
}

/// What one release did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings released.
    pub mappings: usize,
    /// Their resident kB just before the release.
    pub kb: u64,
}

/// The mappings of `smaps` text that [`release`] may drop: backed by a
/// regular file (a path), private, not writable, with no anonymous page and
/// some page resident.
fn releasable(smaps: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    // The header of the mapping being read, if it qualifies so far.
    let mut current: Option<Mapping> = None;
    let mut anonymous: Option<u64> = None;
    fn finish(m: Option<Mapping>, anon: Option<u64>, out: &mut Vec<Mapping>) {
        if let Some(m) = m
            && anon == Some(0)
            && m.rss_kb > 0
        {
            out.push(m);
        }
    }
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((lo, hi)) = first.split_once('-') {
            // A mapping's header: "start-end perms offset dev inode path".
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                finish(current.take(), anonymous.take(), &mut out);
                let perms = fields.next().unwrap_or("");
                let path = fields.nth(3);
                let file_backed = path.is_some_and(|p| p.starts_with('/'));
                let read_only_private =
                    perms.len() == 4 && perms.as_bytes()[1] == b'-' && perms.as_bytes()[3] == b'p';
                if file_backed && read_only_private && end > start {
                    current = Some(Mapping {
                        start,
                        end,
                        rss_kb: 0,
                    });
                }
                continue;
            }
        }
        let value = fields.next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => {
                if let (Some(m), Some(kb)) = (current.as_mut(), value) {
                    m.rss_kb = kb;
                }
            }
            "Anonymous:" => anonymous = value,
            _ => {}
        }
    }
    finish(current, anonymous, &mut out);
    out
}

/// Drops this process's mapping of the file-backed, unmodified, read-only
/// pages it holds (see the module's docs). Linux only; elsewhere it does
/// nothing.
#[allow(unsafe_code)]
pub fn release() -> std::io::Result<Released> {
    #[cfg(target_os = "linux")]
    {
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut done = Released::default();
        for m in releasable(&smaps) {
            // SAFETY: `m` is a private, read-only mapping of a file that
            // holds no page of its own (it was never written: no anonymous
            // page), so MADV_DONTNEED only unmaps page-cache pages, and any
            // later access maps the same file contents again. No Rust object
            // lives in such a mapping. The range is exactly one mapping's,
            // page aligned as the kernel reported it.
            let rc = unsafe {
                libc::madvise(
                    m.start as *mut libc::c_void,
                    m.end - m.start,
                    libc::MADV_DONTNEED,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            done.mappings += 1;
            done.kb += m.rss_kb;
        }
        #[cfg(target_env = "gnu")]
        {
            // SAFETY: malloc_trim only returns free heap pages to the
            // system; it takes the allocator's locks like any allocation.
            let _ = unsafe { libc::malloc_trim(0) };
        }
        Ok(done)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(Released::default())
    }
}

/// Releases after [`FIRST_RELEASE`], then every [`RELEASE_EVERY`], logging
/// what each release dropped; stops at the first error (logged once).
pub async fn release_periodically() {
    let mut wait = FIRST_RELEASE;
    loop {
        tokio::time::sleep(wait).await;
        wait = RELEASE_EVERY;
        match tokio::task::spawn_blocking(release).await {
            Ok(Ok(r)) => tracing::debug!(
                mappings = r.mappings,
                kb = r.kb,
                "released resident code pages"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot release resident code pages; keeping them");
                return;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5555aaaa0000-5555aaab0000 r--p 00000000 fd:01 123 /usr/bin/roster
Rss:                  48 kB
Anonymous:             0 kB
5555aaab0000-5555aacb0000 r-xp 00010000 fd:01 123 /usr/bin/roster
Rss:                1900 kB
Anonymous:             0 kB
5555aacb0000-5555aacc0000 r--p 00210000 fd:01 123 /usr/bin/roster
Rss:                  64 kB
Anonymous:            64 kB
5555aacc0000-5555aacd0000 rw-p 00220000 fd:01 123 /usr/bin/roster
Rss:                  16 kB
Anonymous:            16 kB
5555aacd0000-5555aace0000 rw-p 00000000 00:00 0 [heap]
Rss:                  32 kB
Anonymous:            32 kB
7f0000000000-7f0000010000 r-xp 00000000 fd:01 77 /usr/lib/libc.so.6
Rss:                   0 kB
Anonymous:             0 kB
7f0000010000-7f0000020000 r-xp 00000000 fd:01 78 /usr/lib/libm.so.6
Rss:                  12 kB
Anonymous:             0 kB
7f0000020000-7f0000030000 rw-s 00000000 fd:01 79 /dev/shm/x
Rss:                   4 kB
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
Anonymous:             0 kB
";

    #[test]
    fn only_unmodified_read_only_file_pages_are_released() {
        let got = releasable(SMAPS);
        let starts: Vec<usize> = got.iter().map(|m| m.start).collect();
        assert_eq!(
            starts,
            vec![0x5555aaaa0000, 0x5555aaab0000, 0x7f0000010000],
            "{got:?}"
        );
        assert_eq!(got[1].end - got[1].start, 0x200000);
        assert_eq!(got.iter().map(|m| m.rss_kb).sum::<u64>(), 48 + 1900 + 12);
    }

    #[test]
    fn a_mapping_without_its_anonymous_line_is_kept() {
        // Without the kernel's word that no page is the process's own, the
        // mapping is not touched.
        let text =
            "5555aaab0000-5555aacb0000 r-xp 00010000 fd:01 123 /usr/bin/roster\nRss: 1900 kB\n";
        assert!(releasable(text).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_leaves_the_process_running_its_code() {
        // A real release of this test process's own code and libraries:
        // everything after it runs from pages mapped back in.
        let first = release().expect("release");
        assert!(first.mappings > 0 && first.kb > 0, "{first:?}");
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 500_500);
        // Only what ran since is resident again: far less than before.
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let back: u64 = releasable(&smaps).iter().map(|m| m.rss_kb).sum();
        assert!(
            back < first.kb,
            "{back} kB back of {} kB released",
            first.kb
        );
    }
}
