//! The vendor library `libWeWorkFinanceSdk_C.so`, opened with `dlopen` when
//! the archive is enabled (qunyun neither links nor needs it otherwise). The
//! signatures are those of the SDK's header `WeWorkFinanceSdk_C.h`
//! (docs/wecom.md#message-archive); output goes into a `Slice_t` the SDK
//! allocates and frees.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CString};
use std::path::Path;

use libloading::Library;

/// The SDK's return codes 10001 (network), 10002 (parse) and 10003 (system):
/// worth trying again later; every other non-zero code is not.
pub const RETRYABLE_CODES: std::ops::RangeInclusive<i32> = 10001..=10003;

/// Seconds `GetChatData` may take.
const CALL_TIMEOUT_SECS: c_int = 30;

#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    #[error("loading {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("{call} returned {code} ({})", describe(*code))]
    Code { call: &'static str, code: i32 },
    #[error("{0}: an argument contains a NUL byte")]
    Argument(&'static str),
}

impl SdkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SdkError::Code { code, .. } if RETRYABLE_CODES.contains(code))
    }

    pub fn code(&self) -> Option<i32> {
        match self {
            SdkError::Code { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The header's meaning of each return code.
pub fn describe(code: i32) -> &'static str {
    match code {
        10000 => "bad parameters",
        10001 => "network error",
        10002 => "data parse failed",
        10003 => "system error",
        10004 => "key or encryption failure",
        10005 => "bad fileid",
        10006 => "decryption failed",
        10007 => "no private key for this version",
        10008 => "bad encrypt_key",
        10009 => "IP not allowed",
        10010 => "data expired",
        10011 => "certificate error",
        _ => "unknown code",
    }
}

#[repr(C)]
struct Slice {
    buf: *mut c_char,
    len: c_int,
}

type NewSdkFn = unsafe extern "C" fn() -> *mut c_void;
type InitFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
type GetChatDataFn = unsafe extern "C" fn(
    *mut c_void,
    c_ulonglong,
    c_uint,
    *const c_char,
    *const c_char,
    c_int,
    *mut Slice,
) -> c_int;
type DecryptDataFn = unsafe extern "C" fn(*const c_char, *const c_char, *mut Slice) -> c_int;
type NewSliceFn = unsafe extern "C" fn() -> *mut Slice;
type FreeSliceFn = unsafe extern "C" fn(*mut Slice);
type GetContentFromSliceFn = unsafe extern "C" fn(*mut Slice) -> *mut c_char;
type GetSliceLenFn = unsafe extern "C" fn(*mut Slice) -> c_int;
type DestroySdkFn = unsafe extern "C" fn(*mut c_void);

/// One initialised SDK handle (`NewSdk` + `Init` once, reused: re-creating
/// handles leaks memory in the vendor library). Not shared between threads
/// at once: callers hold it behind a mutex.
pub struct FinanceSdk {
    handle: *mut c_void,
    get_chat_data: GetChatDataFn,
    decrypt_data: DecryptDataFn,
    new_slice: NewSliceFn,
    free_slice: FreeSliceFn,
    content: GetContentFromSliceFn,
    len: GetSliceLenFn,
    destroy: DestroySdkFn,
    // Last: the function pointers above point into it.
    _library: Library,
}

// The handle is used by one thread at a time (behind a mutex); the SDK
// allows a handle to move between threads, only not concurrent use.
unsafe impl Send for FinanceSdk {}

impl FinanceSdk {
    /// Opens the library at `path`, creates a handle and `Init`s it with the
    /// corp id and the archive secret.
    pub fn open(path: &Path, corp_id: &str, secret: &str) -> Result<FinanceSdk, SdkError> {
        let load_error = |reason: String| SdkError::Load {
            path: path.display().to_string(),
            reason,
        };
        // SAFETY: loading runs the library's initialisers; the path is the
        // operator's configured vendor library.
        let library = unsafe { Library::new(path) }.map_err(|e| load_error(e.to_string()))?;
        macro_rules! symbol {
            ($name:literal, $ty:ty) => {
                // SAFETY: the type is the header's signature of that symbol.
                *unsafe { library.get::<$ty>($name) }.map_err(|e| load_error(e.to_string()))?
            };
        }
        let new_sdk = symbol!(b"NewSdk\0", NewSdkFn);
        let init = symbol!(b"Init\0", InitFn);
        let get_chat_data = symbol!(b"GetChatData\0", GetChatDataFn);
        let decrypt_data = symbol!(b"DecryptData\0", DecryptDataFn);
        let new_slice = symbol!(b"NewSlice\0", NewSliceFn);
        let free_slice = symbol!(b"FreeSlice\0", FreeSliceFn);
        let content = symbol!(b"GetContentFromSlice\0", GetContentFromSliceFn);
        let len = symbol!(b"GetSliceLen\0", GetSliceLenFn);
        let destroy = symbol!(b"DestroySdk\0", DestroySdkFn);
        let corp_id = CString::new(corp_id).map_err(|_| SdkError::Argument("Init"))?;
        let secret = CString::new(secret).map_err(|_| SdkError::Argument("Init"))?;
        // SAFETY: header signature.
        let handle = unsafe { new_sdk() };
        if handle.is_null() {
            return Err(load_error("NewSdk returned no handle".into()));
        }
        // Owned from here: dropped (DestroySdk) if Init fails.
        let sdk = FinanceSdk {
            handle,
            get_chat_data,
            decrypt_data,
            new_slice,
            free_slice,
            content,
            len,
            destroy,
            _library: library,
        };
        // SAFETY: header signature; the strings outlive the call.
        let code = unsafe { init(sdk.handle, corp_id.as_ptr(), secret.as_ptr()) };
        if code != 0 {
            return Err(SdkError::Code { call: "Init", code });
        }
        Ok(sdk)
    }

    /// `GetChatData`: up to `limit` records after `seq`, as the SDK's JSON.
    pub fn chat_data(&mut self, seq: u64, limit: u32) -> Result<Vec<u8>, SdkError> {
        let empty = c"";
        self.with_slice("GetChatData", |slice| unsafe {
            (self.get_chat_data)(
                self.handle,
                seq,
                limit,
                empty.as_ptr(),
                empty.as_ptr(),
                CALL_TIMEOUT_SECS,
                slice,
            )
        })
    }

    /// `DecryptData`: a record's message, given its decrypted random key.
    pub fn decrypt(&mut self, random_key: &str, encrypted: &str) -> Result<Vec<u8>, SdkError> {
        let key = CString::new(random_key).map_err(|_| SdkError::Argument("DecryptData"))?;
        let message = CString::new(encrypted).map_err(|_| SdkError::Argument("DecryptData"))?;
        self.with_slice("DecryptData", |slice| unsafe {
            (self.decrypt_data)(key.as_ptr(), message.as_ptr(), slice)
        })
    }

    /// Runs `call` with a fresh slice and copies its content out before freeing it.
    fn with_slice(
        &self,
        name: &'static str,
        call: impl FnOnce(*mut Slice) -> c_int,
    ) -> Result<Vec<u8>, SdkError> {
        // SAFETY: the slice comes from the SDK and goes back to it once.
        let slice = unsafe { (self.new_slice)() };
        if slice.is_null() {
            return Err(SdkError::Code {
                call: "NewSlice",
                code: -1,
            });
        }
        let code = call(slice);
        let result = if code == 0 {
            let (buf, len) = unsafe { ((self.content)(slice), (self.len)(slice)) };
            let len = usize::try_from(len).unwrap_or(0);
            Ok(if buf.is_null() || len == 0 {
                Vec::new()
            } else {
                // SAFETY: the SDK says `buf` holds `len` bytes until FreeSlice.
                unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }.to_vec()
            })
        } else {
            Err(SdkError::Code { call: name, code })
        };
        unsafe { (self.free_slice)(slice) };
        result
    }
}

impl Drop for FinanceSdk {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: the handle came from NewSdk and is destroyed once.
            unsafe { (self.destroy)(self.handle) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_parse_and_system_errors_are_retried() {
        let code = |code| SdkError::Code {
            call: "GetChatData",
            code,
        };
        assert!(code(10001).is_retryable() && code(10003).is_retryable());
        assert!(!code(10000).is_retryable() && !code(10009).is_retryable());
        assert_eq!(
            code(10009).to_string(),
            "GetChatData returned 10009 (IP not allowed)"
        );
    }

    #[test]
    fn a_missing_library_is_an_error_naming_the_path() {
        let error = FinanceSdk::open(Path::new("/nonexistent/libWeWork.so"), "ww1", "s")
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("/nonexistent/libWeWork.so"),
            "{error}"
        );
    }
}
