//! Session records on disk, so a restarted daemon re-adopts its sessions. One JSON file per
//! session, replaced atomically (write to a temporary name, rename).
//!
//! No fsync: a record has to outlive the daemon process (kill -9, upgrade), not the host — after a
//! reboot there are no sockets, no XDP entries and no calls to re-adopt — and the page cache keeps
//! a renamed file across a process crash. The default state directory is on tmpfs (/run).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::session::Media;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub created_unix_ms: u64,
    pub media: Media,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        let dir = state_dir.join("sessions");
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn save(&self, rec: &Record) -> std::io::Result<()> {
        let json = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!(".{}.tmp", rec.id));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        std::fs::rename(&tmp, self.path(&rec.id))
    }

    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every readable record; unreadable files are reported and moved aside, never fatal.
    pub fn load_all(&self) -> Vec<Record> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable session record moved aside");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}
