//! PostgreSQL clusters run by the lab.
//!
//! The `mgmt` cluster is entry-manager's store. It listens on a unix socket only (no TCP), so
//! it is up before any SVID exists; the socket directory is mode 0700, so only its owner (and
//! root) can connect: file-system permissions are its authentication, as for SPIRE's admin
//! socket.
//!
//! PostgreSQL refuses to run as root. When the lab runs as root, the cluster runs as the
//! `postgres` user that Debian's packages create, and its directory is handed to that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{Launch, ProcessRecord};
use crate::{Error, Result};

/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "ztlab";

/// PostgreSQL's binaries: the newest `/usr/lib/postgresql/<version>/bin`, else `pg_config`'s.
pub fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let out = std::process::Command::new("pg_config").arg("--bindir").output();
    if let Ok(out) = out
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    Err(Error::MissingBinary {
        name: "PostgreSQL (initdb, postgres)".into(),
        path: "/usr/lib/postgresql/<version>/bin".into(),
    })
}

/// The (uid, gid) to run PostgreSQL as: `None` when the lab does not run as root.
pub fn server_user() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(u)) => Ok(Some((u.uid.as_raw(), u.gid.as_raw()))),
        _ => Err(Error::config(
            "postgres",
            "PostgreSQL refuses to run as root and there is no 'postgres' user: install Debian's postgresql package \
             (it creates one) or run the lab as a normal user",
        )),
    }
}

/// A cluster's files: `<dir>/data` (PGDATA) and `<dir>/run` (the socket directory).
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The cluster's directory.
    pub dir: PathBuf,
    /// The port number in the socket name (`.s.PGSQL.<port>`); also TCP when enabled.
    pub port: u16,
}

impl Cluster {
    /// A cluster in `dir`.
    pub fn new(dir: &Path, port: u16) -> Self {
        Self { dir: dir.to_path_buf(), port }
    }

    /// PGDATA.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The socket directory (libpq `host`).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// `-h <socket dir> -p <port> -U <superuser>`: how the client tools reach it.
    fn superuser_args(&self) -> [String; 6] {
        let host = self.socket_dir().display().to_string();
        ["-h".into(), host, "-p".into(), self.port.to_string(), "-U".into(), SUPERUSER.into()]
    }

    /// A libpq connection string for `database` over the unix socket.
    pub fn conn_string(&self, database: &str) -> String {
        format!("host={} port={} user={SUPERUSER} dbname={database}", self.socket_dir().display(), self.port)
    }

    fn chown_to(&self, path: &Path, user: Option<(u32, u32)>) -> Result<()> {
        if let Some((uid, gid)) = user {
            nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(|e| Error::Io { context: format!("chown {}", path.display()), source: e.into() })?;
        }
        Ok(())
    }

    /// Creates the cluster (`initdb`) unless it exists, for unix-socket-only use.
    pub async fn init(&self, log: &Path) -> Result<()> {
        let bin = bin_dir()?;
        let user = server_user()?;
        for d in [self.dir.clone(), self.socket_dir()] {
            std::fs::create_dir_all(&d).map_err(Error::io(format!("creating {}", d.display())))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(Error::io(format!("chmod {}", d.display())))?;
            self.chown_to(&d, user)?;
        }
        // Every parent must be traversable by the server's user.
        if user.is_some() {
            allow_traverse(&self.dir)?;
        }
        if self.data_dir().join("PG_VERSION").exists() {
            return Ok(());
        }
        let mut cmd = tokio::process::Command::new(bin.join("initdb"));
        cmd.args([
            "-D",
            &self.data_dir().display().to_string(),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=reject",
            "-E",
            "UTF8",
            "--no-instructions",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().await.map_err(Error::io("running initdb"))?;
        let _ = std::fs::write(log, [out.stdout.as_slice(), out.stderr.as_slice()].concat());
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("initdb -D {}", self.data_dir().display()),
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// Starts `postgres` with unix-socket-only settings plus `extra` `-c` settings.
    pub fn spawn(&self, log: PathBuf, extra: &[(&str, String)]) -> Result<ProcessRecord> {
        let bin = bin_dir()?;
        let mut args = vec!["-D".to_owned(), self.data_dir().display().to_string(), "-p".into(), self.port.to_string()];
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", String::new()),
            ("unix_socket_directories", self.socket_dir().display().to_string()),
            ("unix_socket_permissions", "0700".into()),
            ("log_destination", "stderr".into()),
            ("logging_collector", "off".into()),
        ];
        settings.extend(extra.iter().cloned());
        for (k, v) in settings {
            args.push("-c".into());
            args.push(format!("{k}={v}"));
        }
        crate::process::spawn(&Launch {
            program: bin.join("postgres"),
            args,
            cwd: Some(self.dir.clone()),
            log,
            user: server_user()?,
            ..Launch::default()
        })
    }

    /// Waits until the server accepts connections on its socket.
    pub async fn wait_ready(&self, component: &str, record: &ProcessRecord, timeout: Duration) -> Result<()> {
        let bin = &bin_dir()?;
        crate::wait::wait_ready(component, record, timeout, move || async move {
            let ok = tokio::process::Command::new(bin.join("pg_isready"))
                .arg("-q")
                .args(self.superuser_args())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if ok { Ok(()) } else { Err("pg_isready never succeeded".to_owned()) }
        })
        .await
    }

    /// Runs SQL with `psql` as the superuser and returns its output (unaligned, tuples only).
    pub async fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let bin = bin_dir()?;
        let out = tokio::process::Command::new(bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(self.superuser_args())
            .args(["-d", database, "-c", sql])
            .output()
            .await
            .map_err(Error::io("running psql"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Command {
                command: format!("psql -c {sql:?}"),
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Creates `database` unless it exists.
    pub async fn ensure_database(&self, database: &str) -> Result<()> {
        let exists = self.psql("postgres", &format!("SELECT 1 FROM pg_database WHERE datname = '{database}'")).await?;
        if exists.trim() != "1" {
            self.psql("postgres", &format!("CREATE DATABASE \"{database}\"")).await?;
        }
        Ok(())
    }
}

/// Adds the execute (traverse) bit for others on `dir`'s ancestors that the lab owns, so that
/// the `postgres` user can reach its cluster. Directories are not made listable.
pub(crate) fn allow_traverse(dir: &Path) -> Result<()> {
    for anc in dir.ancestors().skip(1) {
        if anc == Path::new("/") {
            break;
        }
        let Ok(meta) = std::fs::metadata(anc) else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(anc, std::fs::Permissions::from_mode(mode | 0o001))
                .map_err(Error::io(format!("chmod o+x {}", anc.display())))?;
        }
    }
    Ok(())
}
