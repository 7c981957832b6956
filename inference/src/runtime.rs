//! Loading the ONNX Runtime shared library, once per process.
//!
//! mtml links ONNX Runtime dynamically (`ort`'s `load-dynamic`): the library comes from the
//! `onnxruntime` PyPI wheel, installed by `cargo xtask setup`, so nothing is downloaded at build
//! or run time.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::InferenceError;

/// The file name of the library version mtml is built against.
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// A handle to the process's ONNX Runtime environment.
#[derive(Clone)]
pub struct OnnxRuntime {
    environment: Environment,
}

impl std::fmt::Debug for OnnxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnnxRuntime")
    }
}

impl OnnxRuntime {
    /// Loads the library at `library` (first call) or returns the already loaded environment.
    pub fn load(library: &Path) -> Result<Self, InferenceError> {
        if let Some(environment) = ENVIRONMENT.get() {
            return Ok(Self { environment: environment.clone() });
        }
        let _guard = INIT_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(environment) = ENVIRONMENT.get() {
            return Ok(Self { environment: environment.clone() });
        }
        if !library.is_file() {
            return Err(InferenceError::RuntimeMissing(library.to_path_buf()));
        }
        let environment = ort::init_from(library)
            .map_err(|e| InferenceError::Runtime(format!("{}: {e}", library.display())))?
            .with_name("mtml")
            .build()
            .map_err(|e| InferenceError::Runtime(e.to_string()))?;
        let _ = ENVIRONMENT.set(environment.clone());
        Ok(Self { environment })
    }

    pub(crate) fn environment(&self) -> &Environment {
        &self.environment
    }
}

/// Finds the ONNX Runtime library: `$MTML_ORT_LIB`, `$ORT_DYLIB_PATH`, then `.cache/onnxruntime`
/// in the current directory or any parent of it or of the running executable (so that
/// `target/release/mtml` finds the repository's copy).
pub fn locate_library() -> Result<PathBuf, InferenceError> {
    for var in ["MTML_ORT_LIB", "ORT_DYLIB_PATH"] {
        if let Some(path) = std::env::var_os(var) {
            return Ok(PathBuf::from(path));
        }
    }
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::current_dir() {
        starts.push(dir);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        starts.push(dir.to_path_buf());
    }
    for start in &starts {
        for dir in start.ancestors() {
            let candidate = dir.join(".cache/onnxruntime").join(LIBRARY_FILE);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(InferenceError::RuntimeMissing(PathBuf::from(".cache/onnxruntime").join(LIBRARY_FILE)))
}
