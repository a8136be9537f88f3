//! A repository in a local (or mounted) directory.
//!
//! Atomicity comes from the file system: every object is written under a hidden
//! temporary name in its final folder, fsynced, then renamed (or hard-linked, for
//! create-only puts, which fails if the name exists) and the folder is fsynced, so a
//! crash leaves either the old state or the new one plus a hidden leftover that
//! listings ignore and `cleanup_incomplete` removes.

use super::{
    CleanupOptions, MultipartUpload, ObjectMeta, Part, PutMode, PutOptions, StorageError,
    StorageResult, Store, UploadReceipt,
};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Prefix of in-flight temporary files; names starting with `.` are never listed.
const TMP_PREFIX: &str = ".lifeboat-tmp-";

/// A directory repository.
#[derive(Debug, Clone)]
pub struct LocalStore {
    name: String,
    root: PathBuf,
}

impl LocalStore {
    /// A store named `name` rooted at `root` (created on first write).
    pub fn new(name: String, root: PathBuf) -> Self {
        LocalStore { name, root }
    }

    fn err(&self, key: &str, e: io::Error) -> StorageError {
        if e.kind() == io::ErrorKind::NotFound {
            return StorageError::NotFound {
                repo: self.name.clone(),
                key: key.to_string(),
            };
        }
        StorageError::Other {
            repo: self.name.clone(),
            key: key.to_string(),
            message: format!("{} ({})", e, self.root.display()),
            retryable: matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::TimedOut
            ),
        }
    }

    fn path(&self, key: &str) -> StorageResult<PathBuf> {
        let ok = !key.is_empty()
            && !key.starts_with('/')
            && key
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with('.'));
        if !ok {
            return Err(StorageError::Other {
                repo: self.name.clone(),
                key: key.to_string(),
                message: "invalid key".into(),
                retryable: false,
            });
        }
        Ok(self.root.join(key))
    }

    /// A fresh hidden temporary file beside `path`.
    fn temp_for(&self, key: &str, path: &Path) -> StorageResult<(PathBuf, File)> {
        let dir = path.parent().expect("keys have a parent");
        fs::create_dir_all(dir).map_err(|e| self.err(key, e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("obj");
        let tmp = dir.join(format!("{TMP_PREFIX}{name}-{:016x}", rand::random::<u64>()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| self.err(key, e))?;
        Ok((tmp, file))
    }

    /// fsync, then move the temporary file to its final name per `mode`.
    fn commit(
        &self,
        key: &str,
        tmp: &Path,
        file: &File,
        dest: &Path,
        mode: PutMode,
    ) -> StorageResult<()> {
        let result = (|| {
            file.sync_all().map_err(|e| self.err(key, e))?;
            match mode {
                PutMode::Overwrite => fs::rename(tmp, dest).map_err(|e| self.err(key, e))?,
                PutMode::Create => {
                    fs::hard_link(tmp, dest).map_err(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            StorageError::AlreadyExists {
                                repo: self.name.clone(),
                                key: key.to_string(),
                            }
                        } else {
                            self.err(key, e)
                        }
                    })?;
                    let _ = fs::remove_file(tmp);
                }
            }
            sync_dir(dest.parent().expect("keys have a parent")).map_err(|e| self.err(key, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<ObjectMeta>) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let key = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                self.walk(&entry.path(), &key, out)?;
            } else if meta.is_file() {
                out.push(ObjectMeta {
                    key,
                    size: meta.len(),
                    modified: meta
                        .modified()
                        .map(DateTime::<Utc>::from)
                        .unwrap_or_default(),
                    retain_until: None,
                });
            }
        }
        Ok(())
    }

    /// Temporary files under `dir` (whose key is `rel`), each with the key of the
    /// object it was to become and its last write.
    fn walk_temps(
        &self,
        dir: &Path,
        rel: &str,
        out: &mut Vec<(PathBuf, String, DateTime<Utc>)>,
    ) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let key = |n: &str| {
                if rel.is_empty() {
                    n.to_string()
                } else {
                    format!("{rel}/{n}")
                }
            };
            if meta.is_dir() {
                self.walk_temps(&entry.path(), &key(&name), out)?;
            } else if let Some(object) = temp_target(&name) {
                out.push((
                    entry.path(),
                    key(object),
                    meta.modified()
                        .map(DateTime::<Utc>::from)
                        .unwrap_or_default(),
                ));
            }
        }
        Ok(())
    }
}

/// The object name a temporary file was to become (`.lifeboat-tmp-NAME-RANDOM`).
fn temp_target(file_name: &str) -> Option<&str> {
    let (object, random) = file_name.strip_prefix(TMP_PREFIX)?.rsplit_once('-')?;
    (random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit())).then_some(object)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[async_trait]
impl Store for LocalStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> StorageResult<()> {
        let this = self.clone();
        let key = key.to_string();
        let mode = opts.mode;
        blocking(move || {
            let dest = this.path(&key)?;
            let (tmp, mut file) = this.temp_for(&key, &dest)?;
            if let Err(e) = file.write_all(&data) {
                let _ = fs::remove_file(&tmp);
                return Err(this.err(&key, e));
            }
            this.commit(&key, &tmp, &file, &dest, mode)
        })
        .await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let this = self.clone();
        let key = key.to_string();
        blocking(move || {
            let p = this.path(&key)?;
            fs::read(&p).map(Bytes::from).map_err(|e| this.err(&key, e))
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let this = self.clone();
        let key = key.to_string();
        blocking(move || {
            let p = this.path(&key)?;
            let mut f = File::open(&p).map_err(|e| this.err(&key, e))?;
            f.seek(SeekFrom::Start(range.start))
                .map_err(|e| this.err(&key, e))?;
            let len = range.end.saturating_sub(range.start) as usize;
            let mut buf = vec![0u8; len];
            f.read_exact(&mut buf).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    StorageError::Other {
                        repo: this.name.clone(),
                        key: key.clone(),
                        message: format!(
                            "object is shorter than the requested range {}..{}",
                            range.start, range.end
                        ),
                        retryable: false,
                    }
                } else {
                    this.err(&key, e)
                }
            })?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        let this = self.clone();
        let key = key.to_string();
        blocking(move || {
            let p = this.path(&key)?;
            let meta = fs::metadata(&p).map_err(|e| this.err(&key, e))?;
            if !meta.is_file() {
                return Err(StorageError::NotFound {
                    repo: this.name.clone(),
                    key,
                });
            }
            Ok(ObjectMeta {
                key,
                size: meta.len(),
                modified: meta
                    .modified()
                    .map(DateTime::<Utc>::from)
                    .unwrap_or_default(),
                retain_until: None,
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        let this = self.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            // Walk only the folder the prefix names, then filter on the full prefix.
            let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let start = if dir_part.is_empty() {
                this.root.clone()
            } else {
                this.root.join(dir_part)
            };
            let mut out = Vec::new();
            this.walk(&start, dir_part, &mut out)
                .map_err(|e| this.err(&prefix, e))?;
            out.retain(|o| o.key.starts_with(&prefix));
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let this = self.clone();
        let key = key.to_string();
        blocking(move || {
            let p = this.path(&key)?;
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(this.err(&key, e)),
            }
            // Remove folders left empty, so listings and `ls` stay clean.
            let mut dir = p.parent().map(Path::to_path_buf);
            while let Some(d) = dir {
                if d == this.root || fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
            if let Some(parent) = p.parent() {
                let mut d = parent.to_path_buf();
                while !d.exists() {
                    match d.parent() {
                        Some(up) => d = up.to_path_buf(),
                        None => break,
                    }
                }
                let _ = sync_dir(&d);
            }
            Ok(())
        })
        .await
    }

    async fn put_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> StorageResult<Box<dyn MultipartUpload>> {
        let this = self.clone();
        let key = key.to_string();
        let mode = opts.mode;
        blocking(move || {
            let dest = this.path(&key)?;
            let (tmp, file) = this.temp_for(&key, &dest)?;
            Ok(Box::new(LocalUpload {
                store: this,
                key,
                dest,
                tmp,
                file: Arc::new(file),
                mode,
                completed: Arc::default(),
            }) as Box<dyn MultipartUpload>)
        })
        .await
    }

    async fn cleanup_incomplete(&self, opts: &CleanupOptions) -> StorageResult<usize> {
        let this = self.clone();
        let opts = opts.clone();
        blocking(move || {
            // Walk only the folder the prefix names; the options judge each key.
            let dir_part = opts.prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let start = if dir_part.is_empty() {
                this.root.clone()
            } else {
                this.root.join(dir_part)
            };
            let mut temps = Vec::new();
            this.walk_temps(&start, dir_part, &mut temps)
                .map_err(|e| this.err(&opts.prefix, e))?;
            let mut removed = 0;
            for (path, key, modified) in temps {
                // A file still being written has a fresh modification time.
                if opts.removes(&key, modified) && fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
    }
}

struct LocalUpload {
    store: LocalStore,
    key: String,
    dest: PathBuf,
    tmp: PathBuf,
    file: Arc<File>,
    mode: PutMode,
    /// Set once the object is in place, so a repeated complete is answered as done.
    completed: Arc<Mutex<bool>>,
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    async fn put_part(&self, part: Part) -> StorageResult<()> {
        let (store, key, file) = (self.store.clone(), self.key.clone(), self.file.clone());
        blocking(move || {
            super::check_part(&store.name, &key, &part.data, &part.sha256)?;
            // Positional writes: parts may arrive in any order, or twice.
            file.write_all_at(&part.data, part.offset)
                .map_err(|e| store.err(&key, e))
        })
        .await
    }

    async fn complete(&self, _parts: usize) -> StorageResult<UploadReceipt> {
        let (store, key, dest, tmp, file, mode, completed) = (
            self.store.clone(),
            self.key.clone(),
            self.dest.clone(),
            self.tmp.clone(),
            self.file.clone(),
            self.mode,
            self.completed.clone(),
        );
        blocking(move || {
            let mut completed = completed.lock().unwrap_or_else(|e| e.into_inner());
            if !*completed {
                store.commit(&key, &tmp, &file, &dest, mode)?;
                *completed = true;
            }
            Ok(())
        })
        .await?;
        Ok(UploadReceipt::default())
    }

    async fn abort(&self) -> StorageResult<()> {
        if *self.completed.lock().unwrap_or_else(|e| e.into_inner()) {
            // The temporary file is the object now (renamed) or gone (linked).
            return Ok(());
        }
        let (tmp, store, key) = (self.tmp.clone(), self.store.clone(), self.key.clone());
        blocking(move || match fs::remove_file(&tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(store.err(&key, e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new("local".into(), dir.path().join("repo"));
        crate::storage::conformance::run(&store).await;
    }
}
