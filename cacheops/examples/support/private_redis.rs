//! A redis-server of our own on a spare port, stopped and restarted on demand.
//! Shared by the stress program and the failure tests (included with `#[path]`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process that persists to its own directory, so a restart
/// brings back what it held: the case where stale entries could survive an outage.
pub struct PrivateRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
    /// Extra redis-server arguments, e.g. `["--requirepass", "secret"]`.
    args: Vec<String>,
    /// The password this helper's own connections send (`--requirepass`).
    password: Option<String>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        PrivateRedis::start_with(&[])
    }

    /// A server started with these extra arguments; a `--requirepass` among them
    /// is also the password of [`PrivateRedis::client`].
    pub fn start_with(args: &[&str]) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let name = format!("cacheops-redis-{}-{port}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let password = args
            .windows(2)
            .find(|pair| pair[0] == "--requirepass")
            .map(|pair| pair[1].to_string());
        let mut server = PrivateRedis {
            port,
            dir,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            password,
        };
        server.restart();
        server
    }

    /// The server's URL, without a password.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's URL, with its password if it has one.
    fn own_url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    #[allow(dead_code)]
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.own_url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Freezes the server (SIGSTOP): it accepts connections but answers nothing.
    #[allow(dead_code)]
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    #[allow(dead_code)]
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let sent = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid}");
    }

    /// Starts the server (again) and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis::Client::open(self.own_url())
            .unwrap()
            .get_connection()
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Saves the dataset to disk and stops the server.
    pub fn stop_keeping_data(&mut self) {
        if let Ok(mut con) = redis::Client::open(self.own_url())
            .unwrap()
            .get_connection()
        {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("SAVE").query(&mut con);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
