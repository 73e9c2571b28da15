//! `qunyun serve` as a child process, for tests that kill it with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `qunyun serve` and the address it listens on.
pub struct ServeProcess {
    child: Child,
    pub base: String,
}

impl ServeProcess {
    /// Starts the binary and waits for its "listening" line (JSON logs on stderr,
    /// which a thread keeps draining so the process never blocks on the pipe).
    pub fn start(config: &Path) -> ServeProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_qunyun"));
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUNYUN_")) {
            command.env_remove(name);
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("QUNYUN_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,qunyun::app=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qunyun serve starts");
        let stderr = child.stderr.take().unwrap();
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if log["fields"]["message"] == "qunyun listening" {
                    let _ = found.send(log["fields"]["addr"].as_str().unwrap_or("").to_owned());
                }
            }
        });
        let addr = address
            .recv_timeout(Duration::from_secs(30))
            .expect("qunyun serve says where it listens");
        ServeProcess {
            child,
            base: format!("http://{addr}"),
        }
    }

    pub fn kill(mut self) {
        // std's kill is SIGKILL on Unix: no shutdown, no flush, no goodbye.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
