//! Azure Blob Storage repositories (`azure://account/container/prefix`).

use super::{MultipartUpload, ObjectMeta, PutOptions, StorageError, StorageResult, Store};
use crate::error::{Error, Result};
use crate::policy::{AzureConfig, Repository};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::ops::Range;

/// A container (and prefix) in an Azure storage account.
#[derive(Debug)]
pub struct AzureStore {
    name: String,
}

impl AzureStore {
    /// Build the client for `repo`; credentials come from the environment.
    pub async fn connect(repo: &Repository, cfg: &AzureConfig) -> Result<AzureStore> {
        let _ = cfg;
        Err(Error::failed(format!(
            "repository {}: the azure backend is not built into this version",
            repo.name
        )))
    }

    fn unsupported(&self, key: &str) -> StorageError {
        StorageError::Other {
            repo: self.name.clone(),
            key: key.to_string(),
            message: "not supported".into(),
            retryable: false,
        }
    }
}

#[async_trait]
impl Store for AzureStore {
    fn name(&self) -> &str {
        &self.name
    }
    async fn put(&self, key: &str, _data: Bytes, _opts: &PutOptions) -> StorageResult<()> {
        Err(self.unsupported(key))
    }
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        Err(self.unsupported(key))
    }
    async fn get_range(&self, key: &str, _range: Range<u64>) -> StorageResult<Bytes> {
        Err(self.unsupported(key))
    }
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        Err(self.unsupported(key))
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        Err(self.unsupported(prefix))
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        Err(self.unsupported(key))
    }
    async fn put_multipart(
        &self,
        key: &str,
        _opts: &PutOptions,
    ) -> StorageResult<Box<dyn MultipartUpload>> {
        Err(self.unsupported(key))
    }
    async fn cleanup_incomplete(&self, _before: DateTime<Utc>) -> StorageResult<usize> {
        Ok(0)
    }
}
