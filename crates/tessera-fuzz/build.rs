//! Bake libtorch's directory into every binary and test of this crate (rpath), so nothing needs
//! `LD_LIBRARY_PATH` at run time. torch-sys exports the directory as `DEP_TCH_LIBTORCH_LIB`.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
