//! Project automation: `cargo xtask <command>`.
//!
//! - `setup`: fetches the ONNX Runtime library from the `onnxruntime` PyPI wheel into
//!   `.cache/onnxruntime` (pip is the only network client used, and PyPI the only source).
//! - `demo`: setup, release build, and `mtml replay` on the sample that ships in `data/`.
//! - `test`: setup, a PostgreSQL server of its own (installed from Debian's packages if
//!   missing), the Redis and InfluxDB binaries the tests start their own servers from (Debian's
//!   `redis-server`, `influxdb`, `prometheus` and `chromium-driver`, installed if missing), the Python clients the tests use
//!   (tritonclient and the KServe SDK, from PyPI), then the whole test suite.
//! - `train`: setup, feature export through mtml's own code, and model training in a pinned
//!   Python environment (see models/README.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

mod services;

const ORT_VERSION: &str = "1.31.1";
const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";
const DEMO_TICKS: &str = "data/eurusd_fxcm_ticks_2014-05-05_0600-1200.csv.gz";
const TRAIN_TICKS: &str = "data/eurusd_fxcm_ticks_2014-05-04_07.csv.gz";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("setup") => setup(&root).map(|_| ()),
        Some("demo") => demo(&root, &args[1..]),
        Some("test") => test(&root, &args[1..]),
        Some("train") => train(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <setup | demo | test | train [TICKS.csv.gz]>");
            bail!("unknown command")
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn step(message: &str) {
    eprintln!("==> {message}");
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn python() -> &'static str {
    if Command::new("python3").arg("--version").output().is_ok() { "python3" } else { "python" }
}

/// Makes sure `.cache/onnxruntime/libonnxruntime.so.*` exists; returns its path.
fn setup(root: &Path) -> anyhow::Result<PathBuf> {
    let target_dir = root.join(".cache/onnxruntime");
    let library = target_dir.join(ORT_LIBRARY);
    if library.is_file() {
        step(&format!("ONNX Runtime {ORT_VERSION} already set up at {}", library.display()));
        install_for_user(&library)?;
        return Ok(library);
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        bail!("automatic set-up covers Linux x86_64; elsewhere set runtime.onnxruntime_lib");
    }
    let wheels = root.join(".cache/wheels");
    std::fs::create_dir_all(&wheels)?;
    step(&format!("downloading the onnxruntime=={ORT_VERSION} wheel from PyPI (about 24 MB, once)"));
    run(Command::new(python()).args([
        "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
        &format!("onnxruntime=={ORT_VERSION}"), "--dest",
    ]).arg(&wheels))?;
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("onnxruntime-{ORT_VERSION}-"))))
        .context("the downloaded wheel is not in .cache/wheels")?;
    step(&format!("extracting {ORT_LIBRARY} from {}", wheel.display()));
    std::fs::create_dir_all(&target_dir)?;
    let script = format!(
        "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nopen(sys.argv[2], 'wb').write(z.read('onnxruntime/capi/{ORT_LIBRARY}'))\n"
    );
    let partial = target_dir.join(format!("{ORT_LIBRARY}.partial"));
    run(Command::new(python()).arg("-c").arg(script).arg(&wheel).arg(&partial))?;
    std::fs::rename(&partial, &library)?;
    step(&format!("ONNX Runtime ready at {}", library.display()));
    install_for_user(&library)?;
    Ok(library)
}

/// Copies the library into the user's cache (`$XDG_CACHE_HOME/mtml/onnxruntime`, else
/// `~/.cache/mtml/onnxruntime`), where `mtml` finds it whatever folder it runs from.
fn install_for_user(library: &Path) -> anyhow::Result<()> {
    let Some(cache) = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
    else {
        return Ok(());
    };
    let dir = cache.join("mtml/onnxruntime");
    let target = dir.join(ORT_LIBRARY);
    let same_size = |a: &Path, b: &Path| std::fs::metadata(a).ok().map(|m| m.len()) == std::fs::metadata(b).ok().map(|m| m.len());
    if target.is_file() && same_size(library, &target) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = dir.join(format!("{ORT_LIBRARY}.partial"));
    std::fs::copy(library, &partial).with_context(|| format!("copying {} to {}", library.display(), dir.display()))?;
    std::fs::rename(&partial, &target)?;
    step(&format!("ONNX Runtime also in {}, for mtml run from any folder", target.display()));
    Ok(())
}

fn demo(root: &Path, args: &[String]) -> anyhow::Result<()> {
    setup(root)?;
    step("building mtml (release)");
    run(Command::new(cargo()).args(["build", "--release", "--quiet", "-p", "mtml"]))?;
    let ticks = args.first().map_or(DEMO_TICKS, String::as_str);
    step(&format!("replaying {ticks} through the pipeline and a simulated terminal"));
    run(Command::new(root.join("target/release/mtml")).args(["replay", "--ticks", ticks, "--report", "report.json"]))
}

fn test(root: &Path, args: &[String]) -> anyhow::Result<()> {
    setup(root)?;
    let mut command = Command::new(cargo());
    command.args(["test", "--workspace", "--all-targets"]).args(args);
    // Tests that load ONNX Runtime in their own process (and the Python clients) send it nothing.
    command.env("ORT_DISABLE_TELEMETRY", "1");
    // A server of our own on a free port, unless the caller points at one.
    let _postgres = match std::env::var("MTML_TEST_POSTGRES_URL") {
        Ok(url) => {
            step(&format!("using PostgreSQL at {url}"));
            None
        }
        Err(_) => {
            let server = services::Postgres::start()?;
            command.env("MTML_TEST_POSTGRES_URL", server.url());
            Some(server)
        }
    };
    for (variable, binary, package) in [
        ("MTML_TEST_REDIS_SERVER", "redis-server", "redis-server"),
        ("MTML_TEST_INFLUXD", "influxd", "influxdb"),
        ("MTML_TEST_PROMETHEUS", "prometheus", "prometheus"),
        ("MTML_TEST_CHROMEDRIVER", "chromedriver", "chromium-driver"),
    ] {
        if std::env::var_os(variable).is_none() {
            command.env(variable, services::server_binary(binary, package)?);
        }
    }
    command.env("MTML_TEST_PYTHON", test_python(root)?);
    step("running the test suite");
    run(&mut command)
}

fn train(root: &Path, args: &[String]) -> anyhow::Result<()> {
    setup(root)?;
    let ticks = args.first().map_or(TRAIN_TICKS, String::as_str);
    if !Path::new(ticks).is_file() {
        bail!("{ticks} not found: pass the tick file to train on");
    }
    step("building mtml (release)");
    run(Command::new(cargo()).args(["build", "--release", "--quiet", "-p", "mtml"]))?;
    let features = root.join(".cache/train/features.csv");
    std::fs::create_dir_all(features.parent().context("cache dir")?)?;
    step(&format!("exporting features of {ticks} through mtml's online feature code"));
    run(Command::new(root.join("target/release/mtml"))
        .args(["features", "export", "--ticks", ticks, "--out"])
        .arg(&features))?;
    let described = root.join(".cache/train/feature-set.json");
    let output = Command::new(root.join("target/release/mtml")).args(["features", "describe", "--json"]).output()?;
    if !output.status.success() {
        bail!("mtml features describe failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    std::fs::write(&described, &output.stdout)?;
    let venv = root.join(".cache/train-venv");
    let venv_python = venv.join("bin/python");
    if !venv_python.is_file() {
        step("creating the training environment (.cache/train-venv)");
        run(Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    }
    step("installing pinned training requirements (models/requirements.txt)");
    run(Command::new(&venv_python).args(["-m", "pip", "install", "--quiet", "-r", "models/requirements.txt"]))?;
    step("training and exporting models");
    run(Command::new(&venv_python)
        .arg("models/train.py")
        .arg("--features")
        .arg(&features)
        .args(["--source", ticks, "--out", "models", "--feature-set"])
        .arg(&described))
}

/// A Python environment with the external clients the tests check mtml against (tritonclient
/// and the KServe SDK), in `.cache/test-venv`, installed from PyPI once and again whenever the
/// requirements change.
fn test_python(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join(".cache/test-venv");
    let venv_python = venv.join("bin/python");
    let requirements = root.join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).context("reading tests/python/requirements.txt")?;
    let stamp = venv.join("installed-requirements.txt");
    if venv_python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(venv_python);
    }
    step("installing the test clients (tests/python/requirements.txt) into .cache/test-venv");
    if !venv_python.is_file() {
        run(Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(&venv_python).args(["-m", "pip", "install", "--quiet", "-r"]).arg(&requirements))?;
    std::fs::write(&stamp, wanted)?;
    Ok(venv_python)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
