//! Shared by the integration tests: the real MNIST from the data cache.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tessera_data::{fetch, Mnist};

/// `$TESSERA_DATA`, else the workspace's `data/`.
pub fn data_root() -> PathBuf {
    std::env::var_os(fetch::DATA_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"))
}

/// MNIST, loaded once per test binary. Panics with the fetch command if it is missing.
pub fn mnist() -> Arc<Mnist> {
    static M: OnceLock<Arc<Mnist>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = fetch::mnist_dir(&data_root());
        Arc::new(Mnist::load(&dir).unwrap_or_else(|e| panic!("{e} (the tests need the real MNIST)")))
    })
    .clone()
}
