//! [`SpireEntryClient`]: the Entry API over a SPIRE server's admin unix socket.
//!
//! Over the admin socket SPIRE treats the caller as "local" and allows every Entry API call,
//! so no credentials are involved; access is whatever the socket's file permissions allow.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::chunk::{ChunkLimits, Planned, plan_chunks};
use crate::spire::api::server::entry::v1 as pb;
use crate::spire::api::server::entry::v1::entry_client::EntryClient;
use crate::{Entry, EntryMask, Error, ListFilter, Status};

/// Default `page_size` for [`SpireEntryClient::list_all`] (SPIRE's own default).
pub const DEFAULT_PAGE_SIZE: i32 = 500;

/// Responses can echo whole entries; allow more than tonic's 4 MiB default when decoding.
const MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;

/// The outcome for one input of a batch call. Results come in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult<T> {
    /// Position of the input in the caller's slice.
    pub index: usize,
    /// The entry ID: the input's ID (for a create without ID, the generated one on success,
    /// else empty).
    pub id: String,
    /// The value on success, else SPIRE's per-entry status (for example code 6
    /// `AlreadyExists` on create, 5 `NotFound` on update/delete). Inputs too large to send
    /// get code 3 `InvalidArgument` from this client without being sent.
    pub result: Result<T, Status>,
    /// Create only, with `AlreadyExists`: the similar entry SPIRE already holds (same SPIFFE
    /// ID, parent and selector set). Its ID may differ from the requested one. `None` with
    /// `AlreadyExists` means the requested ID is taken by an entry that is *not* similar
    /// (SPIRE reports the datastore's unique-index violation with the same code).
    pub existing: Option<Entry>,
}

/// A client for one SPIRE server's Entry API. Cheap to clone; clones share the connection,
/// which tonic re-establishes (re-opening the socket) after the server restarts.
#[derive(Debug, Clone)]
pub struct SpireEntryClient {
    socket: PathBuf,
    inner: EntryClient<Channel>,
    limits: ChunkLimits,
    page_size: i32,
}

/// Finds the first `io::Error` in an error's source chain.
fn io_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

impl SpireEntryClient {
    /// Connects to the SPIRE server listening on `admin_socket` (its `socket_path`, e.g.
    /// `<site>/server/private/api.sock`). Fails with [`Error::SocketMissing`] when the path
    /// does not exist and [`Error::Connect`] when nothing accepts connections on it.
    pub async fn connect(admin_socket: &Path) -> Result<Self, Error> {
        let socket = admin_socket.to_path_buf();
        if !matches!(socket.try_exists(), Ok(true)) {
            return Err(Error::SocketMissing { path: socket });
        }
        let dial = socket.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let dial = dial.clone();
            async move { UnixStream::connect(dial).await.map(TokioIo::new) }
        });
        // The authority is never resolved: every connection goes through the connector.
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect_with_connector(connector)
            .await
            .map_err(|source| match io_cause(&source) {
                Some(io) if io.kind() == io::ErrorKind::NotFound => Error::SocketMissing { path: socket.clone() },
                Some(io) => Error::Connect { path: socket.clone(), source: io::Error::new(io.kind(), io.to_string()) },
                None => Error::Transport { path: socket.clone(), source },
            })?;
        tracing::debug!(socket = %socket.display(), "connected to the SPIRE server Entry API");
        Ok(Self {
            inner: EntryClient::new(channel).max_decoding_message_size(MAX_DECODE_BYTES),
            socket,
            limits: ChunkLimits::default(),
            page_size: DEFAULT_PAGE_SIZE,
        })
    }

    /// Uses other per-request limits for batch calls.
    #[must_use]
    pub fn with_chunk_limits(mut self, limits: ChunkLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Uses another page size for [`list_all`](Self::list_all) (at least 1).
    #[must_use]
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The admin socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The generated tonic client, for calls this wrapper does not cover.
    pub fn raw(&self) -> EntryClient<Channel> {
        self.inner.clone()
    }

    fn rpc_error(&self, method: &'static str) -> impl FnOnce(tonic::Status) -> Error + '_ {
        move |status| Error::Rpc { path: self.socket.clone(), method, status: Box::new(status) }
    }

    /// Lists every entry matching `filter` (all entries for `None`), following page tokens.
    pub async fn list_all(&self, filter: Option<ListFilter>) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let req = pb::ListEntriesRequest {
                filter: filter.clone(),
                output_mask: None,
                page_size: self.page_size,
                page_token: token.clone(),
            };
            let resp = self.inner.clone().list_entries(req).await.map_err(self.rpc_error("ListEntries"))?.into_inner();
            out.extend(resp.entries);
            if resp.next_page_token.is_empty() {
                return Ok(out);
            }
            if resp.next_page_token == token {
                return Err(Error::Protocol {
                    path: self.socket.clone(),
                    method: "ListEntries",
                    message: format!("page token {token:?} repeated"),
                });
            }
            token = resp.next_page_token;
        }
    }

    /// Counts the entries matching `filter` (all entries for `None`).
    pub async fn count(&self, filter: Option<ListFilter>) -> Result<i32, Error> {
        let filter = filter.map(|f| pb::count_entries_request::Filter {
            by_spiffe_id: f.by_spiffe_id,
            by_parent_id: f.by_parent_id,
            by_selectors: f.by_selectors,
            by_federates_with: f.by_federates_with,
            by_hint: f.by_hint,
            by_downstream: f.by_downstream,
        });
        Ok(self
            .inner
            .clone()
            .count_entries(pb::CountEntriesRequest { filter })
            .await
            .map_err(self.rpc_error("CountEntries"))?
            .into_inner()
            .count)
    }

    /// Gets one entry by ID; `None` when SPIRE answers `NotFound`.
    pub async fn get(&self, id: &str) -> Result<Option<Entry>, Error> {
        let req = pb::GetEntryRequest { id: id.to_owned(), output_mask: None };
        match self.inner.clone().get_entry(req).await {
            Ok(resp) => Ok(Some(resp.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(self.rpc_error("GetEntry")(s)),
        }
    }

    /// Creates `entries` (an `id` set by the caller is kept). One result per input, in order.
    /// An input similar to an existing entry (same SPIFFE ID, parent and selectors) gets
    /// `AlreadyExists` with [`BatchResult::existing`]; the rest of the batch goes on.
    ///
    /// The returned entries' `dns_names` may not be in the order sent (SPIRE 1.15 re-reads
    /// them without ordering; with SQLite they come back sorted). [`list_all`](Self::list_all)
    /// and [`get`](Self::get) return the stored order, which is the order SVIDs use (the first
    /// DNS name becomes the certificate's CN): compare against those.
    pub async fn batch_create(&self, entries: &[Entry]) -> Result<Vec<BatchResult<Entry>>, Error> {
        let sizes: Vec<usize> = entries.iter().map(|e| prost::encoding::message::encoded_len(1, e)).collect();
        let client = self.inner.clone();
        self.chunked(
            "BatchCreateEntry",
            &sizes,
            0,
            |i| entries[i].id.clone(),
            |range| {
                let mut client = client.clone();
                let req = pb::BatchCreateEntryRequest { entries: entries[range.clone()].to_vec(), output_mask: None };
                async move {
                    let results = client.batch_create_entry(req).await?.into_inner().results;
                    Ok(results
                        .into_iter()
                        .zip(range)
                        .map(|(r, index)| {
                            let status = status_or_unknown(r.status);
                            let requested = &entries[index].id;
                            match (status.is_ok(), status.is_already_exists(), r.entry) {
                                (true, _, Some(e)) => {
                                    BatchResult { index, id: e.id.clone(), result: Ok(e), existing: None }
                                }
                                (true, _, None) => missing_entry(index, requested),
                                (false, true, existing) => {
                                    BatchResult { index, id: requested.clone(), result: Err(status), existing }
                                }
                                (false, false, _) => failed(index, requested, status),
                            }
                        })
                        .collect())
                }
            },
        )
        .await
    }

    /// Updates entries by `id`. With `input_mask`, only the masked fields are written; with
    /// `None`, every field is (unset fields are cleared). One result per input, in order; a
    /// missing ID gets `NotFound`. Every successful update bumps `revision_number`, even when
    /// nothing changed. The `dns_names` order caveat of [`batch_create`](Self::batch_create)
    /// applies to the returned entries.
    pub async fn batch_update(
        &self,
        entries: &[Entry],
        input_mask: Option<&EntryMask>,
    ) -> Result<Vec<BatchResult<Entry>>, Error> {
        let sizes: Vec<usize> = entries.iter().map(|e| prost::encoding::message::encoded_len(1, e)).collect();
        let overhead = input_mask.map_or(0, |m| prost::encoding::message::encoded_len(2, m));
        let client = self.inner.clone();
        self.chunked(
            "BatchUpdateEntry",
            &sizes,
            overhead,
            |i| entries[i].id.clone(),
            |range| {
                let mut client = client.clone();
                let req = pb::BatchUpdateEntryRequest {
                    entries: entries[range.clone()].to_vec(),
                    input_mask: input_mask.cloned(),
                    output_mask: None,
                };
                async move {
                    let results = client.batch_update_entry(req).await?.into_inner().results;
                    Ok(results
                        .into_iter()
                        .zip(range)
                        .map(|(r, index)| {
                            let status = status_or_unknown(r.status);
                            let requested = &entries[index].id;
                            match (status.is_ok(), r.entry) {
                                (true, Some(e)) => {
                                    BatchResult { index, id: requested.clone(), result: Ok(e), existing: None }
                                }
                                (true, None) => missing_entry(index, requested),
                                (false, _) => failed(index, requested, status),
                            }
                        })
                        .collect())
                }
            },
        )
        .await
    }

    /// Deletes entries by ID. One result per input, in order; a missing ID gets `NotFound`.
    pub async fn batch_delete<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<BatchResult<()>>, Error> {
        let sizes: Vec<usize> = ids
            .iter()
            .map(|id| {
                let len = id.as_ref().len();
                prost::encoding::key_len(1) + prost::encoding::encoded_len_varint(len as u64) + len
            })
            .collect();
        let client = self.inner.clone();
        self.chunked(
            "BatchDeleteEntry",
            &sizes,
            0,
            |i| ids[i].as_ref().to_owned(),
            |range| {
                let mut client = client.clone();
                let req = pb::BatchDeleteEntryRequest {
                    ids: ids[range.clone()].iter().map(|s| s.as_ref().to_owned()).collect(),
                };
                async move {
                    let results = client.batch_delete_entry(req).await?.into_inner().results;
                    Ok(results
                        .into_iter()
                        .zip(range)
                        .map(|(r, index)| {
                            let status = status_or_unknown(r.status);
                            let id = ids[index].as_ref().to_owned();
                            BatchResult {
                                index,
                                id,
                                result: if status.is_ok() { Ok(()) } else { Err(status) },
                                existing: None,
                            }
                        })
                        .collect())
                }
            },
        )
        .await
    }

    /// Runs a batch call as a sequence of requests planned by [`plan_chunks`]. `send` gets an
    /// index range, sends it, and maps the answer to one result per index.
    async fn chunked<T, F, Fut>(
        &self,
        method: &'static str,
        sizes: &[usize],
        overhead: usize,
        id_of: impl Fn(usize) -> String,
        mut send: F,
    ) -> Result<Vec<BatchResult<T>>, Error>
    where
        F: FnMut(Range<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<BatchResult<T>>, tonic::Status>>,
    {
        let total = sizes.len();
        let mut out = Vec::with_capacity(total);
        for step in plan_chunks(sizes, overhead, self.limits) {
            match step {
                Planned::TooLarge { index, size } => out.push(BatchResult {
                    index,
                    id: id_of(index),
                    result: Err(Status::new(
                        tonic::Code::InvalidArgument,
                        format!(
                            "ztlab: not sent: the input encodes to {size} bytes, over the per-request limit of {} bytes",
                            self.limits.max_bytes
                        ),
                    )),
                    existing: None,
                }),
                Planned::Send(range) => {
                    tracing::debug!(method, from = range.start, to = range.end, total, "sending batch");
                    let expected = range.len();
                    let results = send(range).await.map_err(|status| Error::BatchAborted {
                        path: self.socket.clone(),
                        method,
                        completed: out.len(),
                        total,
                        status: Box::new(status),
                    })?;
                    if results.len() != expected {
                        return Err(Error::Protocol {
                            path: self.socket.clone(),
                            method,
                            message: format!(
                                "{} results for {expected} inputs (after {} of {total} were processed)",
                                results.len(),
                                out.len()
                            ),
                        });
                    }
                    out.extend(results);
                }
            }
        }
        Ok(out)
    }
}

fn status_or_unknown(status: Option<Status>) -> Status {
    status.unwrap_or_else(|| Status::new(tonic::Code::Unknown, "ztlab: result without a status"))
}

fn failed<T>(index: usize, id: &str, status: Status) -> BatchResult<T> {
    BatchResult { index, id: id.to_owned(), result: Err(status), existing: None }
}

fn missing_entry<T>(index: usize, id: &str) -> BatchResult<T> {
    failed(index, id, Status::new(tonic::Code::Internal, "ztlab: OK result without an entry"))
}
