//! A private redis-server on a spare port, for tests that stop and restart it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process that persists to its own directory, so a
/// restart brings back what it held (the case where stale entries could survive).
pub struct PrivateRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(crate::ctx::unique("redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = PrivateRedis {
            port,
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
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
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Saves the dataset to disk and stops the server.
    pub fn stop_keeping_data(&mut self) {
        let _: redis::RedisResult<()> =
            redis::cmd("SHUTDOWN").arg("SAVE").query(&mut self.client());
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
