//! The fused pass's product kernel for this process (`crate::gemm::Kernel`):
//! `TABNETRS_KERNELS=blas|avx2|avx512` forces one (an unavailable choice falls
//! back to the best available), else the best the CPU runs.
use crate::gemm::Kernel;
use std::sync::OnceLock;

/// The kernel, chosen at the first product and kept for the process (the
/// environment variable is read once).
static SELECTED: OnceLock<Kernel> = OnceLock::new();

/// The kernel the fused pass uses in this process.
pub fn selected_kernel() -> Kernel {
    *SELECTED
        .get_or_init(|| Kernel::from_setting(std::env::var("TABNETRS_KERNELS").ok().as_deref()))
}
