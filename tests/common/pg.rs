//! A throwaway PostgreSQL cluster with PostGIS, for the tests that run
//! against the PostGIS store: `initdb` into a temp dir, started on a free
//! port on 127.0.0.1, one database (`onemap`) with the postgis extension;
//! stopped (`pg_ctl stop -m immediate`) and removed on drop.
//!
//! initdb refuses to run as root, so as root every command runs as the
//! `postgres` OS user (`runuser -u postgres --`) in a directory it owns.
//! Without the binaries or PostGIS the test is skipped, except in CI
//! (CI=true), where it fails: `.ci/run` installs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct PgCluster {
    /// The URL of the test database (user `postgres`, trust auth).
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    // Last, so it is removed after the server has stopped.
    _dir: tempfile::TempDir,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

fn unavailable(why: &str) -> Option<PgCluster> {
    if in_ci() {
        panic!(
            "{why}: PostgreSQL 15 and PostGIS are required in CI; .ci/run installs them \
             (postgresql-15 postgresql-15-postgis-3)"
        );
    }
    eprintln!(
        "SKIPPED: {why} (apt-get install postgresql-15 postgresql-15-postgis-3 to run the \
         PostGIS tests)"
    );
    None
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has initdb and pg_ctl.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn output(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(std::process::Stdio::null()).output()
}

fn id(args: &[&str]) -> Option<u32> {
    let o = output(Command::new("id").args(args)).ok()?;
    String::from_utf8(o.stdout).ok()?.trim().parse().ok()
}

impl PgCluster {
    /// Starts a cluster, or says why it cannot (None: skipped).
    pub async fn start() -> Option<PgCluster> {
        let Some(bin) = find_bin() else {
            return unavailable(
                "PostgreSQL binaries (initdb, pg_ctl) not found under /usr/lib/postgresql",
            );
        };
        let share = output(Command::new(bin.join("pg_config")).arg("--sharedir"))
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| PathBuf::from(s.trim()))
            .unwrap_or_default();
        if !share.join("extension/postgis.control").exists() {
            return unavailable(&format!(
                "PostGIS is not installed for PostgreSQL in {}",
                bin.display()
            ));
        }
        let as_postgres = id(&["-u"]) == Some(0);
        let dir = tempfile::Builder::new()
            .prefix("onemap-pg-")
            .tempdir()
            .expect("temp dir");
        if as_postgres {
            let (Some(uid), Some(gid)) = (id(&["-u", "postgres"]), id(&["-g", "postgres"])) else {
                return unavailable("running as root and there is no `postgres` OS user");
            };
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let data = dir.path().join("data");
        let mut cluster = PgCluster {
            url: String::new(),
            port: 0,
            bin,
            data,
            as_postgres,
            _dir: dir,
        };
        let o = cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        assert!(
            o.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // A free port can be taken between our look and the server's bind:
        // try a few.
        let mut started = false;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let o = cluster.pg_ctl_start(port);
            if o.status.success() {
                cluster.port = port;
                started = true;
                break;
            }
        }
        assert!(started, "pg_ctl start failed: {}", cluster.log());
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("connect to cluster");
        sqlx::query("CREATE DATABASE onemap")
            .execute(&pool)
            .await
            .expect("create database");
        pool.close().await;
        cluster.url = format!("postgres://postgres@127.0.0.1:{}/onemap", cluster.port);
        let pool = sqlx::PgPool::connect(&cluster.url)
            .await
            .expect("connect to database");
        sqlx::query("CREATE EXTENSION postgis")
            .execute(&pool)
            .await
            .expect("create extension postgis");
        pool.close().await;
        Some(cluster)
    }

    fn pg_ctl_start(&self, port: u16) -> Output {
        let dir = self.dir();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            dir.display()
        );
        let log = dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server (fast shutdown: sessions are cut off, as when a
    /// database goes down under a running onemap).
    pub fn stop(&self) {
        let o = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(
            o.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        let o = self.pg_ctl_start(self.port);
        assert!(o.status.success(), "pg_ctl start again: {}", self.log());
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("server.log")).unwrap_or_default()
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Runs a PostgreSQL program, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // The server user may not be able to read our working directory.
        cmd.args(args).current_dir(self.dir());
        output(&mut cmd).unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data.to_string_lossy().to_string();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
        }
    }
}
