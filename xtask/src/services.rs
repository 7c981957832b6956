//! Servers the test suite needs, started on free ports and stopped afterwards, so that the tests
//! run the same on a fresh machine (nothing listening, nothing installed) as on one that already
//! runs them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

use crate::{run, step};

/// A throw-away PostgreSQL cluster: trust authentication, loopback only, deleted on drop.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl Postgres {
    /// Installs PostgreSQL if needed, creates a cluster in a temporary folder and starts it.
    pub fn start() -> anyhow::Result<Self> {
        let bin = match find_bin() {
            Some(bin) => bin,
            None => {
                step("PostgreSQL is not installed; installing Debian's postgresql package");
                run(Command::new("apt-get").arg("update").arg("-qq"))?;
                run(Command::new("apt-get").args(["install", "-y", "-qq", "postgresql"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
                find_bin().context("postgresql installed but initdb not found under /usr/lib/postgresql")?
            }
        };
        let port = free_port()?;
        let data = std::env::temp_dir().join(format!("mtml-test-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        // initdb refuses to run as root: run the server as the postgres user then.
        let as_postgres_user = is_root();
        if as_postgres_user {
            run(Command::new("chown").args(["-R", "postgres:"]).arg(&data))?;
        }
        let server = Self { bin, data, port, as_postgres_user };
        step(&format!("starting PostgreSQL for the tests on 127.0.0.1:{port}"));
        let data_arg = server.data.display().to_string();
        run(&mut server.command("initdb", &["-D", &data_arg, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]))
            .context("initdb")?;
        let options = format!("-p {port} -k {data_arg} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = server.data.join("server.log").display().to_string();
        run(&mut server.command("pg_ctl", &["-D", &data_arg, "-o", &options, "-l", &log, "-w", "start"]))
            .context("starting PostgreSQL")?;
        Ok(server)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program).args(args);
            command.stdout(std::process::Stdio::null());
            command
        } else {
            let mut command = Command::new(program);
            command.args(args).stdout(std::process::Stdio::null());
            command
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self.command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]).status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The path of `binary`, installing Debian's `package` first if it is not on the machine. The
/// tests start their own servers from it (on free ports, in temporary folders), so that they can
/// stop and restart them for outage tests.
pub fn server_binary(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
    let find = || {
        ["/usr/bin", "/usr/sbin", "/usr/local/bin"].iter().map(|dir| PathBuf::from(dir).join(binary)).find(|p| p.is_file())
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    step(&format!("{binary} is not installed; installing Debian's {package} package"));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq", package]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    find().with_context(|| format!("{package} installed but {binary} not found"))
}
