//! SoftHSM2 for the PKCS#11 provider tests (installed by
//! tests/providers/install.sh): one configuration and token directory per
//! test process, and a fresh token per test, initialized in-process.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, when the module is initialized, and a
//! process initializes a module once; so a test binary has one
//! configuration, set by [`softhsm`] before anything loads the module, and
//! each test gets its own token (its own label and PIN) in it. Tests that
//! run the operator binary give it a configuration of its own
//! ([`SoftHsm::new_dir`]).
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The security officer PIN of every test token.
pub const SO_PIN: &str = "0000";

/// A SoftHSM configuration and its token directory.
pub struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    /// A new configuration in a temporary directory (for a child process:
    /// pass [`SoftHsm::conf`] as `SOFTHSM2_CONF`).
    pub fn new_dir() -> SoftHsm {
        assert!(
            Path::new(MODULE).exists(),
            "{MODULE} is missing: run `bash tests/providers/install.sh`"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        SoftHsm { dir }
    }

    /// The configuration file.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The token directory.
    pub fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// Creates a token with `softhsm2-util` (for a child process's configuration).
    pub fn init_token_with_util(&self, label: &str, pin: &str) {
        let out = std::process::Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.conf())
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                pin,
            ])
            .output()
            .expect("run softhsm2-util (bash tests/providers/install.sh)");
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

struct Process {
    _hsm: SoftHsm,
    ctx: Pkcs11,
    lock: Mutex<u32>,
}

/// This process's SoftHSM, configured before the module is first loaded.
fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| {
        let hsm = SoftHsm::new_dir();
        // SAFETY: runs once, inside this OnceLock, before any PKCS#11 module
        // is loaded in this process: every test of the binaries that include
        // this module reaches the module only through here, so no other
        // thread reads the environment from C at this point.
        unsafe { std::env::set_var("SOFTHSM2_CONF", hsm.conf()) };
        let ctx = Pkcs11::new(MODULE).expect("load SoftHSM");
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
        Process {
            _hsm: hsm,
            ctx,
            lock: Mutex::new(0),
        }
    })
}

/// A fresh token in this process's SoftHSM, labelled `<prefix>-<n>`, with
/// user PIN `pin`. Returns its label.
pub fn token(prefix: &str, pin: &str) -> String {
    let p = process();
    let mut n = p.lock.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    let label = format!("{prefix}-{n}");
    let slot = p
        .ctx
        .get_all_slots()
        .unwrap()
        .into_iter()
        .find(|s| {
            p.ctx
                .get_token_info(*s)
                .map(|t| !t.token_initialized())
                .unwrap_or(false)
        })
        .expect("SoftHSM always offers a free slot");
    let so_pin = AuthPin::from(SO_PIN.to_string());
    p.ctx
        .init_token(slot, &so_pin, &label)
        .expect("C_InitToken");
    // init_token moves the token to a new slot id in SoftHSM: find it by label.
    let slot = p
        .ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| {
            p.ctx
                .get_token_info(*s)
                .map(|t| t.label().trim_end() == label)
                .unwrap_or(false)
        })
        .expect("the new token");
    let session = p.ctx.open_rw_session(slot).unwrap();
    session.login(UserType::So, Some(&so_pin)).unwrap();
    session.init_pin(&AuthPin::from(pin.to_string())).unwrap();
    session.logout().unwrap();
    label
}
