// Over 600 lines on purpose: one binding of the PKCS#11 interface (module
// loading, sessions, key templates, mechanisms, reading a public key back)
// whose calls share the token's handles and its in-flight limit.

//! The PKCS#11 key provider: keys generated inside a token (an HSM, a TPM
//! through tpm2-pkcs11, SoftHSM) and used there, through the `cryptoki`
//! crate. The private half never leaves the token: it is created
//! `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`.
//!
//! # Design
//!
//! - A module is loaded and `C_Initialize`d once per process
//!   ([`module`]): PKCS#11 allows one initialization per application, and
//!   every policy using the same `.so` shares it.
//! - One [`Pkcs11Provider`] per (module, token label) in the process
//!   ([`Pkcs11Provider::open`]): login state is per application and token,
//!   so a second policy on the same token reuses the logged-in provider;
//!   its PIN must equal the one the token was logged in with (compared in
//!   constant time), or it is refused like a wrong PIN.
//! - A key is pinned by a random 16-byte `CKA_ID` drawn from the token's
//!   own generator (`C_GenerateRandom`), recorded in an RFC 7512 URI
//!   ([`Pkcs11Uri`]). Both objects of the pair carry that id and the kid as
//!   `CKA_LABEL`. Every signature looks the private key up by that id (the
//!   handle is cached and looked up again if the token says it went stale).
//! - Generation is one step from the caller's view: generate the pair, read
//!   back the public key, label it, sign and verify a test message; if any
//!   step fails both objects are destroyed, so a failed generation leaves no
//!   half-made key in the token or the set.
//! - Mechanisms: `CKM_SHA{256,384,512}_RSA_PKCS` for RS*,
//!   `CKM_SHA{256,384,512}_RSA_PKCS_PSS` with MGF1 of the same hash and a
//!   salt of the hash length for PS*, `CKM_ECDSA` over a SHA-256/384 digest
//!   computed here for ES256/ES384 (the token returns raw `r‖s`, checked to
//!   be exactly twice the curve size), `CKM_EDDSA` (pure Ed25519) for EdDSA.
//! - Every signature is verified with the cached public key before it is
//!   returned.
//! - Calls are blocking FFI. At most [`MAX_IN_FLIGHT`] run at once per
//!   token (so at most that many sessions are open); a call that cannot get
//!   a place within [`QUEUE_TIMEOUT`] fails with `Busy` instead of queueing
//!   past kube-apiserver's deadline. A call already inside the module
//!   cannot be interrupted; async callers run calls on the blocking pool.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};
use serde_json::{Value, json};

use super::reference::{KeyReference, PKCS11, Pkcs11Uri, ProviderError};
use crate::api;
use crate::keys::alg::{Algorithm, KeyParams};
use crate::keys::lifecycle::KeySource;
use crate::keys::material::{RemoteSigner, SigningKey, VerifyingKey, jwk_thumbprint};
use crate::keys::redacted::RedactedString;

/// Bytes of a generated `CKA_ID`.
const ID_LEN: u32 = 16;
/// What a new key signs (and verifies) before it is accepted.
const SELF_TEST_MESSAGE: &[u8] = b"jwks-operator key self-test";

/// DER of the curve OIDs, as `CKA_EC_PARAMS`.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// Where to find a token and how to log in to it.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The user PIN.
    pub pin: RedactedString,
}

/// A key held in a token: its reference and its cached public half.
#[derive(Clone, Debug)]
pub struct Pkcs11Key {
    /// Where the private key is.
    pub uri: Pkcs11Uri,
    /// The public key (kid = its RFC 7638 thumbprint for generated keys).
    pub verifying: VerifyingKey,
}

impl Pkcs11Key {
    /// The key's reference, as stored in `lifecycle.json`.
    pub fn reference(&self) -> KeyReference {
        KeyReference::Pkcs11(self.uri.clone())
    }
}

impl Pkcs11Config {
    /// The configuration a policy's `keyProvider` names, with its PIN (read
    /// by the adapter: a Secret in Kubernetes, `pinFile` otherwise).
    /// `None` when the provider is not `PKCS11` or lacks a field (CEL
    /// refuses that at admission).
    pub fn from_spec(spec: &api::KeyProvider, pin: RedactedString) -> Option<Self> {
        if spec.kind != api::KeyProviderType::Pkcs11 {
            return None;
        }
        Some(Pkcs11Config {
            module: PathBuf::from(spec.module.as_ref()?),
            token_label: spec.token_label.clone()?,
            pin,
        })
    }
}

// === impl Pkcs11Signer ===

/// A token-held key as the key domain signs with it
/// ([`RemoteSigner`]): the key's reference and cached public half, and the
/// logged-in token (found by label among the tokens this process has opened
/// when the key was read back from a stored set).
pub struct Pkcs11Signer {
    key: Pkcs11Key,
    reference: String,
    provider: OnceLock<Arc<Pkcs11Provider>>,
}

impl Pkcs11Signer {
    /// A signer for `key` on `provider` (a key just generated there).
    pub fn on(provider: Arc<Pkcs11Provider>, key: Pkcs11Key) -> Self {
        let signer = Self::unbound(key);
        let _ = signer.provider.set(provider);
        signer
    }

    /// A signer for `key` that finds its token when it first signs.
    pub fn unbound(key: Pkcs11Key) -> Self {
        Pkcs11Signer {
            reference: key.uri.to_string(),
            key,
            provider: OnceLock::new(),
        }
    }

    fn provider(&self) -> Result<&Arc<Pkcs11Provider>, ProviderError> {
        if let Some(p) = self.provider.get() {
            return Ok(p);
        }
        let found = Pkcs11Provider::find_open(&self.key.uri.token).ok_or_else(|| {
            ProviderError::Call {
                provider: PKCS11,
                token: self.key.uri.token.clone(),
                op: "sign",
                code: "the token is not open in this process (the policy's keyProvider was not set up)".into(),
            }
        })?;
        Ok(self.provider.get_or_init(|| found))
    }
}

impl RemoteSigner for Pkcs11Signer {
    fn reference(&self) -> &str {
        &self.reference
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.provider()
            .and_then(|p| p.sign(&self.key, message))
            .map_err(|e| e.to_string())
    }
}

/// The planner's key source for a policy whose keys live in a token.
pub struct Pkcs11KeySource(pub Arc<Pkcs11Provider>);

impl KeySource<Arc<SigningKey>> for Pkcs11KeySource {
    type Error = ProviderError;

    fn generate(&mut self, params: KeyParams) -> Result<Arc<SigningKey>, ProviderError> {
        let key = self.0.generate(params)?;
        let public = key.verifying.clone();
        let signer = Arc::new(Pkcs11Signer::on(self.0.clone(), key));
        Ok(Arc::new(SigningKey::remote(params, public, signer)))
    }
}

// === module loading ===

type Modules = Mutex<HashMap<PathBuf, Pkcs11>>;
static MODULES: OnceLock<Modules> = OnceLock::new();

/// The module at `path`, loaded and initialized once per process.
fn module(path: &Path) -> Result<Pkcs11, ProviderError> {
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let load_error = |detail: String| ProviderError::ModuleLoad {
        provider: PKCS11,
        module: path.display().to_string(),
        detail,
    };
    if !path.is_absolute() {
        return Err(load_error("the module path must be absolute".into()));
    }
    let ctx = Pkcs11::new(path).map_err(|e| load_error(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_error(format!("C_Initialize: {}", code(&e)))),
    }
    modules.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

/// A cryptoki error as a short code (`PinIncorrect`, `KeyHandleInvalid`),
/// never the library's paragraph of prose.
fn code(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{function}: {rv:?}"),
        other => other.to_string(),
    }
}

// === impl Pkcs11Provider ===

type Providers = Mutex<HashMap<(PathBuf, String), Arc<Pkcs11Provider>>>;
static PROVIDERS: OnceLock<Providers> = OnceLock::new();

/// Most calls in flight on one token; further calls wait for a place.
pub const MAX_IN_FLIGHT: usize = 8;
/// Longest a call waits for a place before it fails: well under the 10 s
/// kube-apiserver gives its external signer and a token request's patience.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// A counting semaphore for blocking callers (calls are blocking FFI).
#[derive(Default)]
struct Gate {
    busy: Mutex<usize>,
    freed: Condvar,
}

struct Place<'a>(&'a Gate);

impl Gate {
    fn enter(&self, limit: usize, wait: Duration) -> Option<Place<'_>> {
        let deadline = Instant::now() + wait;
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= limit {
            let left = deadline.checked_duration_since(Instant::now())?;
            busy = self
                .freed
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *busy += 1;
        Some(Place(self))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy -= 1;
        self.0.freed.notify_one();
    }
}

/// One logged-in token.
pub struct Pkcs11Provider {
    ctx: Pkcs11,
    slot: Slot,
    token: String,
    pin: RedactedString,
    /// Keeps the login alive: PKCS#11 logs the application out when its
    /// last session on the token closes.
    _login: Mutex<Session>,
    /// Idle sessions, reused so a signature opens none.
    idle: Mutex<Vec<Session>>,
    /// Private-key handles by `CKA_ID`.
    handles: Mutex<HashMap<Vec<u8>, ObjectHandle>>,
    /// Bounds the calls in flight (and so the sessions open).
    gate: Gate,
    /// Sessions opened so far (besides the login session).
    opened: AtomicUsize,
}

impl fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Provider")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Provider {
    /// The provider for `config`'s token, logged in: opened once per
    /// process and token, and shared.
    pub fn open(config: &Pkcs11Config) -> Result<Arc<Self>, ProviderError> {
        let mut providers = PROVIDERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (config.module.clone(), config.token_label.clone());
        if let Some(open) = providers.get(&key) {
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(
                open.pin.expose().as_bytes(),
                config.pin.expose().as_bytes(),
            )
            .is_ok();
            if !same {
                return Err(ProviderError::PinRefused {
                    provider: PKCS11,
                    token: config.token_label.clone(),
                    code: "PinIncorrect: not the PIN this process logged in to the token with"
                        .into(),
                });
            }
            return Ok(open.clone());
        }
        let provider = Arc::new(Self::login(config)?);
        providers.insert(key, provider.clone());
        Ok(provider)
    }

    fn login(config: &Pkcs11Config) -> Result<Self, ProviderError> {
        let ctx = module(&config.module)?;
        let token = config.token_label.clone();
        let call = |op: &'static str| {
            let token = token.clone();
            move |e: CkError| ProviderError::Call {
                provider: PKCS11,
                token: token.clone(),
                op,
                code: code(&e),
            }
        };
        let slot = find_slot(&ctx, &token)
            .map_err(call("list tokens"))?
            .ok_or_else(|| ProviderError::TokenNotFound {
                provider: PKCS11,
                label: token.clone(),
                module: config.module.display().to_string(),
            })?;
        let session = ctx.open_rw_session(slot).map_err(call("open a session"))?;
        let pin = AuthPin::from(config.pin.expose().clone());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(
                e @ CkError::Pkcs11(
                    RvError::PinIncorrect
                    | RvError::PinLocked
                    | RvError::PinInvalid
                    | RvError::PinLenRange
                    | RvError::PinExpired,
                    _,
                ),
            ) => {
                return Err(ProviderError::PinRefused {
                    provider: PKCS11,
                    token,
                    code: code(&e),
                });
            }
            Err(e) => return Err(call("log in")(e)),
        }
        Ok(Pkcs11Provider {
            ctx,
            slot,
            token,
            pin: config.pin.clone(),
            _login: Mutex::new(session),
            idle: Mutex::new(Vec::new()),
            handles: Mutex::new(HashMap::new()),
            gate: Gate::default(),
            opened: AtomicUsize::new(0),
        })
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token
    }

    /// The provider this process has logged in to the token labelled
    /// `label` (whatever its module), if any: how a key read back from a
    /// stored set finds the token its reference names.
    pub fn find_open(label: &str) -> Option<Arc<Self>> {
        PROVIDERS
            .get()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|((_, l), _)| l == label)
            .map(|(_, p)| p.clone())
    }

    /// How many sessions this provider has opened (never more than
    /// [`MAX_IN_FLIGHT`], however many callers sign at once).
    pub fn sessions_opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    fn call_error(&self, op: &'static str) -> impl Fn(CkError) -> ProviderError + '_ {
        move |e| ProviderError::Call {
            provider: PKCS11,
            token: self.token.clone(),
            op,
            code: code(&e),
        }
    }

    /// Runs `f` on an idle session (or a new one), returning the session
    /// to the pool unless the token said it is gone.
    fn with_session<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Session) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let _place = self
            .gate
            .enter(MAX_IN_FLIGHT, QUEUE_TIMEOUT)
            .ok_or_else(|| ProviderError::Call {
                provider: PKCS11,
                token: self.token.clone(),
                op,
                code: format!(
                    "Busy: {MAX_IN_FLIGHT} calls in flight for {}s",
                    QUEUE_TIMEOUT.as_secs()
                ),
            })?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let session = match idle {
            Some(s) => s,
            None => {
                let s = self
                    .ctx
                    .open_rw_session(self.slot)
                    .map_err(self.call_error(op))?;
                self.opened.fetch_add(1, Ordering::Relaxed);
                s
            }
        };
        let out = f(&session);
        let broken = matches!(
            &out,
            Err(ProviderError::Call { code, .. })
                if ["SessionHandleInvalid", "SessionClosed", "DeviceRemoved", "TokenNotPresent", "DeviceError"]
                    .iter()
                    .any(|c| code.ends_with(c))
        );
        if !broken {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(session);
        }
        out
    }

    /// Whether the token offers every mechanism `alg` needs.
    pub fn supports(&self, alg: Algorithm) -> Result<bool, ProviderError> {
        let list = self
            .ctx
            .get_mechanism_list(self.slot)
            .map_err(self.call_error("list mechanisms"))?;
        let (generate, sign) = mechanisms(alg);
        Ok(list.contains(&generate) && list.contains(&sign))
    }

    /// Generates a key pair for `params` inside the token and returns its
    /// reference and public key. On any failure nothing stays in the token.
    pub fn generate(&self, params: KeyParams) -> Result<Pkcs11Key, ProviderError> {
        let alg = params.alg;
        if !self.supports(alg)? {
            let (generate, sign) = mechanisms(alg);
            return Err(ProviderError::Unsupported {
                provider: PKCS11,
                alg,
                detail: format!("token {:?} lacks {generate} or {sign}", self.token),
            });
        }
        self.with_session("generate a key", |session| {
            let id = session
                .generate_random_vec(ID_LEN)
                .map_err(self.call_error("draw a key id"))?;
            let (mechanism, mut public, mut private) = templates(params);
            for t in [&mut public, &mut private] {
                t.extend([
                    Attribute::Token(true),
                    Attribute::Id(id.clone()),
                    Attribute::Label(b"jwks-operator".to_vec()),
                ]);
            }
            let (pub_handle, priv_handle) = session
                .generate_key_pair(&mechanism, &public, &private)
                .map_err(self.call_error("generate a key pair"))?;
            let finish = || -> Result<Pkcs11Key, ProviderError> {
                let uri_without_kid = Pkcs11Uri {
                    token: self.token.clone(),
                    id: id.clone(),
                    object: None,
                };
                let verifying = read_public(session, pub_handle, alg, &uri_without_kid)?;
                let kid = verifying.kid().to_owned();
                for handle in [pub_handle, priv_handle] {
                    session
                        .update_attributes(handle, &[Attribute::Label(kid.as_bytes().to_vec())])
                        .map_err(self.call_error("label the key"))?;
                }
                let key = Pkcs11Key {
                    uri: Pkcs11Uri {
                        object: Some(kid),
                        ..uri_without_kid
                    },
                    verifying,
                };
                self.sign_with(session, priv_handle, &key, SELF_TEST_MESSAGE)?;
                Ok(key)
            };
            match finish() {
                Ok(key) => {
                    self.handles
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, priv_handle);
                    Ok(key)
                }
                Err(e) => {
                    // Best effort: the error that matters is the first one.
                    let _ = session.destroy_object(priv_handle);
                    let _ = session.destroy_object(pub_handle);
                    Err(e)
                }
            }
        })
    }

    /// Reads the key `uri` names (adoption of an existing key, or a check
    /// that a stored reference still resolves): its public key, with the
    /// kid the RFC 7638 thumbprint.
    pub fn load(&self, uri: &Pkcs11Uri, alg: Algorithm) -> Result<Pkcs11Key, ProviderError> {
        self.check_token(uri)?;
        self.with_session("read a key", |session| {
            let public = find(session, &uri.id, ObjectClass::PUBLIC_KEY)
                .map_err(self.call_error("find the public key"))?
                .ok_or_else(|| not_found(uri))?;
            let verifying = read_public(session, public, alg, uri)?;
            Ok(Pkcs11Key {
                uri: Pkcs11Uri {
                    object: Some(verifying.kid().to_owned()),
                    ..uri.clone()
                },
                verifying,
            })
        })
    }

    /// Signs `message` with `key` (JOSE format: raw `r‖s` for ECDSA) and
    /// verifies the signature with the cached public key before returning it.
    pub fn sign(&self, key: &Pkcs11Key, message: &[u8]) -> Result<Vec<u8>, ProviderError> {
        self.check_token(&key.uri)?;
        self.with_session("sign", |session| {
            let handle = self.private_handle(session, &key.uri, false)?;
            match self.sign_with(session, handle, key, message) {
                Err(ProviderError::Call { code, .. })
                    if code.ends_with("KeyHandleInvalid")
                        || code.ends_with("ObjectHandleInvalid") =>
                {
                    let handle = self.private_handle(session, &key.uri, true)?;
                    self.sign_with(session, handle, key, message)
                }
                other => other,
            }
        })
    }

    /// Destroys both objects of the key `uri` names. A key already gone is
    /// not an error; returns how many objects were destroyed.
    pub fn destroy(&self, uri: &Pkcs11Uri) -> Result<usize, ProviderError> {
        self.check_token(uri)?;
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uri.id);
        self.with_session("destroy a key", |session| {
            let objects = session
                .find_objects(&[Attribute::Id(uri.id.clone())])
                .map_err(self.call_error("find the key's objects"))?;
            for object in &objects {
                session
                    .destroy_object(*object)
                    .map_err(self.call_error("destroy a key object"))?;
            }
            Ok(objects.len())
        })
    }

    /// Whether an object with `uri`'s id exists in the token.
    pub fn exists(&self, uri: &Pkcs11Uri) -> Result<bool, ProviderError> {
        self.check_token(uri)?;
        self.with_session("find a key", |session| {
            session
                .find_objects(&[Attribute::Id(uri.id.clone())])
                .map(|found| !found.is_empty())
                .map_err(self.call_error("find a key"))
        })
    }

    fn check_token(&self, uri: &Pkcs11Uri) -> Result<(), ProviderError> {
        if uri.token != self.token {
            return Err(ProviderError::BadReference(format!(
                "{uri} names token {:?}, but the policy's token is {:?}",
                uri.token, self.token
            )));
        }
        Ok(())
    }

    fn private_handle(
        &self,
        session: &Session,
        uri: &Pkcs11Uri,
        refresh: bool,
    ) -> Result<ObjectHandle, ProviderError> {
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if !refresh && let Some(h) = handles.get(&uri.id) {
            return Ok(*h);
        }
        let handle = find(session, &uri.id, ObjectClass::PRIVATE_KEY)
            .map_err(self.call_error("find the private key"))?
            .ok_or_else(|| not_found(uri))?;
        handles.insert(uri.id.clone(), handle);
        Ok(handle)
    }

    fn sign_with(
        &self,
        session: &Session,
        handle: ObjectHandle,
        key: &Pkcs11Key,
        message: &[u8],
    ) -> Result<Vec<u8>, ProviderError> {
        let alg = key.verifying.alg();
        let pss = |hash: MechanismType, mgf: PkcsMgfType, len: u64| PkcsPssParams {
            hash_alg: hash,
            mgf,
            s_len: Ulong::from(len),
        };
        let digest = |d: &'static aws_lc_rs::digest::Algorithm| {
            aws_lc_rs::digest::digest(d, message).as_ref().to_vec()
        };
        let (mechanism, data) = match alg {
            Algorithm::RS256 => (Mechanism::Sha256RsaPkcs, message.to_vec()),
            Algorithm::RS384 => (Mechanism::Sha384RsaPkcs, message.to_vec()),
            Algorithm::RS512 => (Mechanism::Sha512RsaPkcs, message.to_vec()),
            Algorithm::PS256 => (
                Mechanism::Sha256RsaPkcsPss(pss(
                    MechanismType::SHA256,
                    PkcsMgfType::MGF1_SHA256,
                    32,
                )),
                message.to_vec(),
            ),
            Algorithm::PS384 => (
                Mechanism::Sha384RsaPkcsPss(pss(
                    MechanismType::SHA384,
                    PkcsMgfType::MGF1_SHA384,
                    48,
                )),
                message.to_vec(),
            ),
            Algorithm::PS512 => (
                Mechanism::Sha512RsaPkcsPss(pss(
                    MechanismType::SHA512,
                    PkcsMgfType::MGF1_SHA512,
                    64,
                )),
                message.to_vec(),
            ),
            Algorithm::ES256 => (Mechanism::Ecdsa, digest(&aws_lc_rs::digest::SHA256)),
            Algorithm::ES384 => (Mechanism::Ecdsa, digest(&aws_lc_rs::digest::SHA384)),
            Algorithm::EdDSA => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                message.to_vec(),
            ),
        };
        let signature = session
            .sign(&mechanism, handle, &data)
            .map_err(self.call_error("sign"))?;
        let expected = match alg {
            Algorithm::ES256 => Some(64),
            Algorithm::ES384 => Some(96),
            Algorithm::EdDSA => Some(64),
            _ => None,
        };
        if let Some(len) = expected
            && signature.len() != len
        {
            return Err(ProviderError::BadOutput {
                provider: PKCS11,
                reference: key.uri.to_string(),
                what: format!("a {alg} signature of {} bytes, not {len}", signature.len()),
            });
        }
        key.verifying
            .verify_signature(message, &signature)
            .map_err(|_| ProviderError::BadOutput {
                provider: PKCS11,
                reference: key.uri.to_string(),
                what: "the token's signature does not verify with the key's published public key"
                    .into(),
            })?;
        Ok(signature)
    }
}

fn not_found(uri: &Pkcs11Uri) -> ProviderError {
    ProviderError::KeyNotFound {
        provider: PKCS11,
        reference: uri.to_string(),
    }
}

/// The slot holding an initialized token labelled `label`.
fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, CkError> {
    for slot in ctx.get_slots_with_initialized_token()? {
        if ctx.get_token_info(slot)?.label().trim_end() == label {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

fn find(session: &Session, id: &[u8], class: ObjectClass) -> Result<Option<ObjectHandle>, CkError> {
    Ok(session
        .find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])?
        .into_iter()
        .next())
}

/// The (key-pair generation, signing) mechanisms of `alg`.
fn mechanisms(alg: Algorithm) -> (MechanismType, MechanismType) {
    match alg {
        Algorithm::RS256 => (
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::SHA256_RSA_PKCS,
        ),
        Algorithm::RS384 => (
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::SHA384_RSA_PKCS,
        ),
        Algorithm::RS512 => (
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::SHA512_RSA_PKCS,
        ),
        Algorithm::PS256 => (
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::SHA256_RSA_PKCS_PSS,
        ),
        Algorithm::PS384 => (
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::SHA384_RSA_PKCS_PSS,
        ),
        Algorithm::PS512 => (
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::SHA512_RSA_PKCS_PSS,
        ),
        Algorithm::ES256 | Algorithm::ES384 => {
            (MechanismType::ECC_KEY_PAIR_GEN, MechanismType::ECDSA)
        }
        Algorithm::EdDSA => (
            MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
            MechanismType::EDDSA,
        ),
    }
}

/// The generation mechanism and the public and private templates for
/// `params` (without id, label and `CKA_TOKEN`).
fn templates(params: KeyParams) -> (Mechanism<'static>, Vec<Attribute>, Vec<Attribute>) {
    let private = vec![
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ];
    let verify = Attribute::Verify(true);
    match params.alg {
        a if a.is_rsa() => (
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                verify,
                Attribute::ModulusBits(Ulong::from(u64::from(params.rsa_bits.unwrap_or(2048)))),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            ],
            private,
        ),
        Algorithm::ES256 => (
            Mechanism::EccKeyPairGen,
            vec![verify, Attribute::EcParams(P256_PARAMS.to_vec())],
            private,
        ),
        Algorithm::ES384 => (
            Mechanism::EccKeyPairGen,
            vec![verify, Attribute::EcParams(P384_PARAMS.to_vec())],
            private,
        ),
        _ => (
            Mechanism::EccEdwardsKeyPairGen,
            vec![verify, Attribute::EcParams(ED25519_PARAMS.to_vec())],
            private,
        ),
    }
}

/// Reads the public key object into a public JWK, with the RFC 7638
/// thumbprint as `kid`.
fn read_public(
    session: &Session,
    handle: ObjectHandle,
    alg: Algorithm,
    uri: &Pkcs11Uri,
) -> Result<VerifyingKey, ProviderError> {
    let bad = |what: String| ProviderError::BadOutput {
        provider: PKCS11,
        reference: uri.to_string(),
        what,
    };
    let wanted: &[AttributeType] = if alg.is_rsa() {
        &[AttributeType::Modulus, AttributeType::PublicExponent]
    } else {
        &[AttributeType::EcPoint]
    };
    let attributes = session
        .get_attributes(handle, wanted)
        .map_err(|e| ProviderError::Call {
            provider: PKCS11,
            token: uri.token.clone(),
            op: "read the public key",
            code: code(&e),
        })?;
    let mut modulus = None;
    let mut exponent = None;
    let mut point = None;
    for a in attributes {
        match a {
            Attribute::Modulus(v) => modulus = Some(v),
            Attribute::PublicExponent(v) => exponent = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let strip = |v: &[u8]| {
        let zeros = v
            .iter()
            .take_while(|b| **b == 0)
            .count()
            .min(v.len().saturating_sub(1));
        v[zeros..].to_vec()
    };
    let mut jwk: Value = match alg {
        a if a.is_rsa() => {
            let (Some(n), Some(e)) = (modulus, exponent) else {
                return Err(bad("the public key has no modulus or exponent".into()));
            };
            json!({"kty": "RSA", "n": b64(&strip(&n)), "e": b64(&strip(&e))})
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let (crv, size) = if alg == Algorithm::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            let point = point.ok_or_else(|| bad("the public key has no EC point".into()))?;
            let raw = unwrap_octet_string(&point, 1 + 2 * size)
                .filter(|p| p[0] == 0x04)
                .ok_or_else(|| bad(format!("an EC point of {} bytes for {crv}", point.len())))?;
            json!({"kty": "EC", "crv": crv, "x": b64(&raw[1..=size]), "y": b64(&raw[1 + size..])})
        }
        _ => {
            let point = point.ok_or_else(|| bad("the public key has no EC point".into()))?;
            let raw = unwrap_octet_string(&point, 32)
                .ok_or_else(|| bad(format!("an Ed25519 key of {} bytes", point.len())))?;
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)})
        }
    };
    let kid = jwk_thumbprint(&jwk).map_err(|e| bad(e.to_string()))?;
    jwk["kid"] = Value::String(kid);
    jwk["alg"] = Value::String(alg.as_str().into());
    jwk["use"] = Value::String("sig".into());
    VerifyingKey::from_public_jwk(&jwk).map_err(|e| bad(e.to_string()))
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (PKCS#11 2.40);
/// some modules return the bare point. Accepts both, by length.
fn unwrap_octet_string(value: &[u8], point_len: usize) -> Option<&[u8]> {
    if value.len() == point_len {
        return Some(value);
    }
    match value {
        [0x04, len, rest @ ..] if (*len as usize) == point_len && rest.len() == point_len => {
            Some(rest)
        }
        [0x04, 0x81, len, rest @ ..] if (*len as usize) == point_len && rest.len() == point_len => {
            Some(rest)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_percent_encode_the_id() {
        let uri = Pkcs11Uri {
            token: "cluster keys".into(),
            id: vec![0x00, 0xab, 0x10],
            object: Some("kid-1_x".into()),
        };
        let text = uri.to_string();
        assert_eq!(
            text,
            "pkcs11:token=cluster%20keys;id=%00%ab%10;object=kid-1_x;type=private"
        );
        assert_eq!(text.parse::<Pkcs11Uri>().unwrap(), uri);
    }

    #[test]
    fn hostile_uris_are_errors() {
        for text in [
            "",
            "pkcs11:",
            "pkcs11:token=a",
            "pkcs11:id=%01",
            "pkcs11:token=a;id=%zz",
            "pkcs11:token=a;id=%0",
            "pkcs11:token=a;id=%01;type=secret-key",
            "pkcs11:token=%ff;id=%01",
            "file:///x",
            &format!("pkcs11:token=a;id={}", "%01".repeat(400)),
        ] {
            assert!(text.parse::<Pkcs11Uri>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn ec_points_are_read_wrapped_or_bare_by_length() {
        let bare = [0x04; 65];
        assert_eq!(unwrap_octet_string(&bare, 65), Some(&bare[..]));
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&bare);
        assert_eq!(unwrap_octet_string(&wrapped, 65), Some(&bare[..]));
        assert_eq!(unwrap_octet_string(&wrapped[..60], 65), None);
        let ed = [7u8; 32];
        let mut ed_wrapped = vec![0x04, 32];
        ed_wrapped.extend_from_slice(&ed);
        assert_eq!(unwrap_octet_string(&ed_wrapped, 32), Some(&ed[..]));
    }
}
