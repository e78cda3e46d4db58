//! The module's SONAME: glibc loads NSS modules as `libnss_NAME.so.2`, and ldconfig and the
//! packagers (dpkg-shlibdeps, rpm's Provides) read the SONAME, which a cdylib lacks by
//! default.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnss_wulf.so.2");
}
