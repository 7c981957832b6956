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

/// The variable that keeps ONNX Runtime from collecting telemetry. The library (1.31, from the
/// PyPI wheel) queues usage events for upload to Microsoft in
/// `~/.cache/Microsoft/DeveloperTools/.onnxruntime/` as it starts unless this is set in the
/// process's environment at that moment; disabling telemetry on the environment afterwards
/// (`DisableTelemetryEvents`) comes too late for the first event. `mtml` sets it first thing.
pub const TELEMETRY_OFF_ENV: &str = "ORT_DISABLE_TELEMETRY";

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
            return Err(InferenceError::RuntimeMissing(format!("{} is not a file", library.display())));
        }
        if std::env::var_os(TELEMETRY_OFF_ENV).is_none() {
            tracing::warn!("{TELEMETRY_OFF_ENV} is not set: ONNX Runtime will queue telemetry events for Microsoft (the mtml binary sets it; set it when embedding the library)");
        }
        let environment = ort::init_from(library)
            .map_err(|e| InferenceError::Runtime(format!("{}: {e}", library.display())))?
            .with_name("mtml")
            // ONNX Runtime queues usage events for upload to Microsoft unless told not to.
            .with_telemetry(false)
            .build()
            .map_err(|e| InferenceError::Runtime(e.to_string()))?;
        let _ = ENVIRONMENT.set(environment.clone());
        Ok(Self { environment })
    }

    pub(crate) fn environment(&self) -> &Environment {
        &self.environment
    }
}

/// Where the library is looked for when no path is configured, in order: beside the running
/// executable, in `.cache/onnxruntime` of any folder above it (a `target/release/mtml` finds
/// its repository's copy), in the user's cache (`$XDG_CACHE_HOME/mtml/onnxruntime`, else
/// `~/.cache/mtml/onnxruntime`, where `cargo xtask setup` also puts it), and in
/// `.cache/onnxruntime` of the current folder or any folder above it.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join(LIBRARY_FILE));
        candidates.extend(dir.ancestors().map(|d| d.join(".cache/onnxruntime").join(LIBRARY_FILE)));
    }
    if let Some(cache) = user_cache_dir() {
        candidates.push(cache.join("mtml/onnxruntime").join(LIBRARY_FILE));
    }
    if let Ok(dir) = std::env::current_dir() {
        candidates.extend(dir.ancestors().map(|d| d.join(".cache/onnxruntime").join(LIBRARY_FILE)));
    }
    candidates
}

/// The user's cache folder: `$XDG_CACHE_HOME`, else `$HOME/.cache`.
pub fn user_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|home| PathBuf::from(home).join(".cache")))
}

/// Finds the ONNX Runtime library: `configured` (the `runtime.onnxruntime_lib` setting) if
/// given, else the first of [`library_candidates`] that exists.
pub fn locate_library(configured: Option<&Path>) -> Result<PathBuf, InferenceError> {
    if let Some(path) = configured {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(InferenceError::RuntimeMissing(format!("runtime.onnxruntime_lib is {}, which is not a file", path.display())))
        };
    }
    let candidates = library_candidates();
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(found.clone());
    }
    let mut looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    looked.dedup();
    Err(InferenceError::RuntimeMissing(format!("{LIBRARY_FILE} is in none of {}", looked.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_library_that_is_not_there_is_named() {
        let error = locate_library(Some(Path::new("/nowhere/libonnxruntime.so"))).unwrap_err().to_string();
        assert!(error.contains("runtime.onnxruntime_lib is /nowhere/libonnxruntime.so"), "{error}");
        assert!(error.contains("MTML_RUNTIME_ONNXRUNTIME_LIB"), "the setting's variable is named: {error}");
    }

    #[test]
    fn the_executable_folder_and_the_user_cache_are_searched() {
        let candidates = library_candidates();
        let exe_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
        assert_eq!(candidates[0], exe_dir.join(LIBRARY_FILE));
        if let Some(cache) = user_cache_dir() {
            assert!(candidates.contains(&cache.join("mtml/onnxruntime").join(LIBRARY_FILE)));
        }
    }
}
