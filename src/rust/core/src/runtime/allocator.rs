//! glibc's allocator thresholds during a run (see [`super::run_settings`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    /// glibc's adaptive mmap threshold tops out at 32 MiB (64-bit), with the
    /// trim threshold at twice that; once set with mallopt the adaptation stops,
    /// so afterwards the thresholds are left at that steady state.
    const MMAP_MAX: i32 = 32 * 1024 * 1024;

    pub fn keep_pages() {
        // SAFETY: mallopt only changes glibc's tuning parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_MAX);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }

    /// Trimming resumes above 64 MiB; with `trim`, the free memory goes
    /// back to the system now.
    pub fn restore(trim: bool) {
        // SAFETY: as above; malloc_trim releases free heap memory.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MMAP_MAX);
            if trim {
                libc::malloc_trim(0);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn keep_pages() {}
    pub fn restore(_trim: bool) {}
}

pub(super) use imp::{keep_pages, restore};
