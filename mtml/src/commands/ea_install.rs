//! `mtml ea install`: copies the expert advisor into MetaTrader 5 data folders.
//!
//! The EA's sources are built into the binary, so installing needs nothing but `mtml`. Data
//! folders are found where MetaTrader keeps them: `%APPDATA%\MetaQuotes\Terminal\<id>\MQL5` on
//! Windows, the same path inside Wine prefixes (`$WINEPREFIX`, `~/.wine`, `~/.mt5`, and the
//! prefix of the macOS MetaTrader app), the portable `Program Files/MetaTrader 5/MQL5` of those
//! prefixes, or any folder given with `--terminal-dir`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The EA's files, relative to a terminal's `MQL5` folder, with their contents.
pub const EA_FILES: [(&str, &str); 4] = [
    ("Experts/mtml/MtmlBridge.mq5", include_str!("../../../mql5/Experts/mtml/MtmlBridge.mq5")),
    ("Include/mtml/Protocol.mqh", include_str!("../../../mql5/Include/mtml/Protocol.mqh")),
    ("Include/mtml/Transport.mqh", include_str!("../../../mql5/Include/mtml/Transport.mqh")),
    ("Include/mtml/Journal.mqh", include_str!("../../../mql5/Include/mtml/Journal.mqh")),
];

/// Where to look for terminals; [`SearchRoots::from_env`] reads the real environment.
#[derive(Debug, Clone, Default)]
pub struct SearchRoots {
    /// `%APPDATA%` (Windows).
    pub appdata: Option<PathBuf>,
    /// The home directory (Wine prefixes live under it).
    pub home: Option<PathBuf>,
    /// `$WINEPREFIX`.
    pub wine_prefix: Option<PathBuf>,
}

impl SearchRoots {
    /// From `APPDATA`, `HOME` (or `USERPROFILE`) and `WINEPREFIX`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        Self {
            appdata: var("APPDATA"),
            home: var("HOME").or_else(|| var("USERPROFILE")),
            wine_prefix: var("WINEPREFIX"),
        }
    }

    fn wine_prefixes(&self) -> Vec<PathBuf> {
        let mut prefixes: Vec<PathBuf> = self.wine_prefix.iter().cloned().collect();
        if let Some(home) = &self.home {
            prefixes.push(home.join(".wine"));
            prefixes.push(home.join(".mt5"));
            prefixes.push(home.join("Library/Application Support/net.metaquotes.wine.metatrader5"));
        }
        prefixes
    }
}

/// Every `MQL5` data folder found, deduplicated, in a stable order.
pub fn find_terminals(roots: &SearchRoots) -> Vec<PathBuf> {
    let mut terminal_roots: Vec<PathBuf> = Vec::new();
    if let Some(appdata) = &roots.appdata {
        terminal_roots.push(appdata.join("MetaQuotes/Terminal"));
    }
    let mut found = Vec::new();
    for prefix in roots.wine_prefixes() {
        let users = prefix.join("drive_c/users");
        if let Ok(entries) = std::fs::read_dir(&users) {
            for user in entries.flatten() {
                terminal_roots.push(user.path().join("AppData/Roaming/MetaQuotes/Terminal"));
            }
        }
        for program_files in ["Program Files", "Program Files (x86)"] {
            let portable = prefix.join("drive_c").join(program_files).join("MetaTrader 5/MQL5");
            if portable.is_dir() {
                found.push(portable);
            }
        }
    }
    for root in terminal_roots {
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let mql5 = entry.path().join("MQL5");
                if mql5.is_dir() {
                    found.push(mql5);
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// What installing a file into a folder does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The file is new.
    Create(PathBuf),
    /// The file exists with other contents and is replaced.
    Replace(PathBuf),
    /// The file is already this version.
    Unchanged(PathBuf),
}

/// The actions that installing into `mql5` (a terminal's `MQL5` folder) takes.
pub fn plan(mql5: &Path) -> Vec<Action> {
    EA_FILES
        .iter()
        .map(|(relative, contents)| {
            let path = mql5.join(relative);
            match std::fs::read_to_string(&path) {
                Ok(existing) if existing == *contents => Action::Unchanged(path),
                Ok(_) => Action::Replace(path),
                Err(_) => Action::Create(path),
            }
        })
        .collect()
}

/// Where a replaced file's previous contents are kept: `MtmlBridge.mq5.bak`.
pub fn backup_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

/// Carries out a plan; a file it replaces is first copied to [`backup_of`] it.
pub fn apply(actions: &[Action]) -> std::io::Result<()> {
    for action in actions {
        let (Action::Create(path) | Action::Replace(path)) = action else { continue };
        let contents = EA_FILES
            .iter()
            .find(|(relative, _)| path.ends_with(relative))
            .map(|(_, contents)| *contents)
            .ok_or_else(|| std::io::Error::other(format!("{} is not an EA file", path.display())))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if matches!(action, Action::Replace(_)) {
            // The file may hold the user's edits: keep them beside it.
            std::fs::copy(path, backup_of(path))?;
        }
        std::fs::write(path, contents)?;
    }
    Ok(())
}

/// Installs into the given folders (or, when none is given, every terminal found), and returns
/// the text to show: what was (or, with `dry_run`, would be) done, and the steps left to do in
/// MetaTrader.
pub fn install(
    explicit: &[PathBuf],
    roots: &SearchRoots,
    dry_run: bool,
    bridge: std::net::SocketAddr,
) -> anyhow::Result<String> {
    let mut targets = Vec::new();
    for dir in explicit {
        // Accept the data folder itself or its MQL5 subfolder.
        let mql5 = if dir.ends_with("MQL5") { dir.clone() } else { dir.join("MQL5") };
        if !mql5.is_dir() {
            anyhow::bail!("{} is not a MetaTrader 5 data folder: it has no MQL5 folder", dir.display());
        }
        targets.push(mql5);
    }
    if explicit.is_empty() {
        targets = find_terminals(roots);
    }
    if targets.is_empty() {
        anyhow::bail!(
            "no MetaTrader 5 data folder found (looked in %APPDATA%\\MetaQuotes\\Terminal and Wine prefixes); \
             open the terminal once, or pass --terminal-dir (File > Open Data Folder shows it)"
        );
    }
    let mut out = String::new();
    let verb = if dry_run { "would" } else { "did" };
    for mql5 in &targets {
        let actions = plan(mql5);
        let _ = writeln!(out, "{}:", mql5.display());
        for action in &actions {
            let line = match action {
                Action::Create(path) => format!("  {verb} create  {}", path.display()),
                Action::Replace(path) => {
                    format!("  {verb} replace {} (the old one kept as {})", path.display(), backup_of(path).display())
                }
                Action::Unchanged(path) => format!("  unchanged     {}", path.display()),
            };
            let _ = writeln!(out, "{line}");
        }
        if !dry_run {
            apply(&actions)?;
        }
    }
    let port = bridge.port();
    let host = if bridge.ip().is_unspecified() {
        let _ = writeln!(
            out,
            "\nThe bridge listens on every address of this machine ({bridge}): below, HOST is this \
             machine's address as the terminal reaches it (its LAN or VPN address, or 127.0.0.1 \
             when the terminal runs here), never {}.",
            bridge.ip()
        );
        "HOST".to_owned()
    } else {
        bridge.ip().to_string()
    };
    let _ = writeln!(out, "\nLeft to do in each terminal:");
    let _ = writeln!(out, "  1. MetaEditor: open Experts/mtml/MtmlBridge.mq5 and compile it (F7).");
    let _ = writeln!(out, "  2. Tools > Options > Expert Advisors: tick \"Allow algorithmic trading\" and");
    let _ = writeln!(out, "     \"Allow WebRequest for listed URL\", and add {host} to the list (sockets need it).");
    let _ = writeln!(out, "  3. Turn on Algo Trading in the toolbar.");
    let _ = writeln!(out, "  4. Attach MtmlBridge to any chart; inputs: host {host}, port {port}, the bridge token,");
    let _ = writeln!(out, "     and the symbols to stream (comma separated; empty streams the chart symbol).");
    if dry_run {
        let _ = writeln!(out, "\nDry run: nothing was written.");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_terminal(root: &Path, relative: &str) -> PathBuf {
        let mql5 = root.join(relative);
        std::fs::create_dir_all(mql5.join("Experts")).unwrap();
        mql5
    }

    #[test]
    fn finds_windows_wine_and_portable_terminals() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let windows = fake_terminal(root, "appdata/MetaQuotes/Terminal/D0E8209F77C8CF37AD8BF550E51FF075/MQL5");
        let wine = fake_terminal(root, "home/.wine/drive_c/users/trader/AppData/Roaming/MetaQuotes/Terminal/ABC/MQL5");
        let portable = fake_terminal(root, "home/.mt5/drive_c/Program Files/MetaTrader 5/MQL5");
        std::fs::create_dir_all(root.join("appdata/MetaQuotes/Terminal/Common/Files")).unwrap();
        let roots = SearchRoots {
            appdata: Some(root.join("appdata")),
            home: Some(root.join("home")),
            wine_prefix: None,
        };
        let mut expected = vec![windows, wine, portable];
        expected.sort();
        assert_eq!(find_terminals(&roots), expected, "the Common folder is not a terminal");
    }

    #[test]
    fn dry_run_writes_nothing_and_install_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("terminal");
        std::fs::create_dir_all(data.join("MQL5")).unwrap();
        let roots = SearchRoots::default();
        let text = install(std::slice::from_ref(&data), &roots, true, "127.0.0.1:5555".parse().unwrap()).unwrap();
        assert!(text.contains("would create"), "{text}");
        assert!(text.contains("Dry run: nothing was written."));
        assert!(!data.join("MQL5/Experts/mtml/MtmlBridge.mq5").exists());

        let text = install(std::slice::from_ref(&data), &roots, false, "127.0.0.1:5555".parse().unwrap()).unwrap();
        assert_eq!(text.matches("did create").count(), 4, "{text}");
        let installed = std::fs::read_to_string(data.join("MQL5/Experts/mtml/MtmlBridge.mq5")).unwrap();
        assert_eq!(installed, EA_FILES[0].1);
        std::fs::write(data.join("MQL5/Include/mtml/Protocol.mqh"), "old").unwrap();
        let text = install(&[data.join("MQL5")], &roots, false, "10.0.0.5:7000".parse().unwrap()).unwrap();
        assert_eq!(text.matches("unchanged").count(), 3, "{text}");
        assert_eq!(text.matches("did replace").count(), 1, "{text}");
        assert!(text.contains("add 10.0.0.5 to the list"), "{text}");
        let backup = data.join("MQL5/Include/mtml/Protocol.mqh.bak");
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "old", "an edited file is kept beside the new one");
        assert!(text.contains(&format!("the old one kept as {}", backup.display())), "{text}");
    }

    #[test]
    fn a_wildcard_listen_address_is_not_given_as_the_host_to_use() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("terminal");
        std::fs::create_dir_all(data.join("MQL5")).unwrap();
        for wildcard in ["0.0.0.0:5555", "[::]:5555"] {
            let text = install(std::slice::from_ref(&data), &SearchRoots::default(), true, wildcard.parse().unwrap()).unwrap();
            assert!(!text.contains("add 0.0.0.0") && !text.contains("host 0.0.0.0") && !text.contains("host ::"), "{text}");
            assert!(text.contains("listens on every address of this machine"), "{text}");
            assert!(text.contains("add HOST to the list") && text.contains("host HOST, port 5555"), "{text}");
        }
    }

    #[test]
    fn a_folder_that_is_not_a_terminal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = install(&[dir.path().to_path_buf()], &SearchRoots::default(), true, "127.0.0.1:1".parse().unwrap()).unwrap_err();
        assert!(error.to_string().contains("has no MQL5 folder"), "{error}");
        let error = install(&[], &SearchRoots::default(), true, "127.0.0.1:1".parse().unwrap()).unwrap_err();
        assert!(error.to_string().contains("no MetaTrader 5 data folder found"), "{error}");
    }
}
