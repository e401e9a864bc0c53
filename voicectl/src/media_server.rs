//! The stand-in's recording media, served the way Twilio's API serves it:
//! `GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.wav` (or `.mp3`) with
//! Basic auth, 404 until the recording is ready, 429 when asked to, and
//! `DELETE .../Recordings/{RecordingSid}`. WAV bodies (8 kHz, 16-bit PCM, one or two
//! channels) are generated on the fly and streamed, so any length costs no memory; the same
//! generator gives the checksum a test expects.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

const SAMPLE_RATE: u32 = 8_000;
const CHUNK: usize = 64 * 1024;

/// One recording the stand-in holds.
#[derive(Debug, Clone)]
pub struct Recording {
    pub seconds: u32,
    pub channels: u16,
    /// Statuses answered to the first requests, in order (e.g. `[404, 404]`: not ready for
    /// two tries; `[429]`; `[503]`), before the media is served.
    pub faults: VecDeque<u16>,
    /// Serve bytes that are not audio (a RIFF header with its tag spoiled), which
    /// Transcribe refuses: how the tests make a job fail.
    pub not_audio: bool,
    /// The `Retry-After` a 429 fault carries (`1` by default); a test gives a hostile one.
    pub retry_after: Option<String>,
    /// Where a 3xx fault redirects (a host off the allow-list, in a test).
    pub redirect_to: Option<String>,
}

impl Recording {
    pub fn new(seconds: u32, channels: u16) -> Self {
        Self {
            seconds,
            channels,
            faults: VecDeque::new(),
            not_audio: false,
            retry_after: None,
            redirect_to: None,
        }
    }

    /// 429 faults carry this `Retry-After`.
    pub fn with_retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }

    /// 3xx faults redirect to `url`.
    pub fn with_redirect(mut self, url: &str) -> Self {
        self.redirect_to = Some(url.to_owned());
        self
    }

    pub fn not_audio(mut self) -> Self {
        self.not_audio = true;
        self
    }

    pub fn with_faults(mut self, faults: &[u16]) -> Self {
        self.faults = faults.iter().copied().collect();
        self
    }

    /// The size of its WAV file.
    pub fn wav_len(&self) -> u64 {
        44 + self.data_len()
    }

    fn data_len(&self) -> u64 {
        u64::from(self.seconds) * u64::from(SAMPLE_RATE) * u64::from(self.channels) * 2
    }
}

#[derive(Default)]
struct Held {
    recording: Option<Recording>,
    requests: u32,
    /// Times the media was served whole (a 200).
    served: u32,
    deleted: bool,
}

pub(crate) struct MediaState {
    account_sid: String,
    auth_token: String,
    /// API keys (SID, secret) of the account, which Twilio's REST API accepts as Basic auth
    /// just as it does the Account SID and auth token.
    api_keys: std::sync::RwLock<Vec<(String, String)>>,
    recordings: Mutex<HashMap<String, Held>>,
    /// Every request the server got, to any path: what a worker asked of "Twilio".
    all_requests: std::sync::atomic::AtomicU64,
    /// The account's phone numbers and TwiML Apps (`crate::twilio_api`).
    pub(crate) provisioned: crate::twilio_api::Provisioned,
}

/// The running media server; stopped when dropped.
pub struct MediaServer {
    pub addr: SocketAddr,
    state: Arc<MediaState>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl MediaServer {
    /// Listens on a free loopback port.
    pub async fn start(account_sid: &str, auth_token: &str) -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            account_sid,
            auth_token,
        )
        .await
    }

    /// Listens on `addr` (a fixed port that a running stack's worker allows).
    pub async fn start_on(
        addr: SocketAddr,
        account_sid: &str,
        auth_token: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(MediaState {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            api_keys: Default::default(),
            recordings: Mutex::default(),
            all_requests: Default::default(),
            provisioned: Default::default(),
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Recordings/{file}",
                get(fetch).delete(delete),
            )
            .route(
                "/2010-04-01/Accounts/{account}/{file}",
                get(crate::twilio_api::list),
            )
            .route(
                "/2010-04-01/Accounts/{account}/{resource}/{file}",
                axum::routing::post(crate::twilio_api::update),
            )
            // Any other resource of Twilio's API: counted, and not found here.
            .fallback(|State(state): State<Arc<MediaState>>| async move {
                state.count_request();
                status(StatusCode::NOT_FOUND)
            })
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(shutdown),
        })
    }

    /// Accepts the account's API key as credentials too (`SK…` and its secret), as Twilio's
    /// REST API does.
    pub fn accept_api_key(&self, sid: &str, secret: &str) {
        self.state
            .api_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((sid.to_owned(), secret.to_owned()));
    }

    /// The account's phone numbers and TwiML Apps, which the REST API serves.
    pub fn provisioned(&self) -> &crate::twilio_api::Provisioned {
        &self.state.provisioned
    }

    /// The REST API's base URL (`https://api.twilio.com` on Twilio).
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `host:port`, for the worker's allow-list.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn add(&self, recording_sid: &str, recording: Recording) {
        self.state.lock().insert(
            recording_sid.to_owned(),
            Held {
                recording: Some(recording),
                ..Held::default()
            },
        );
    }

    /// The `RecordingUrl` Twilio would send (no extension).
    pub fn recording_url(&self, recording_sid: &str) -> String {
        format!(
            "http://{}/2010-04-01/Accounts/{}/Recordings/{recording_sid}",
            self.addr, self.state.account_sid
        )
    }

    /// Requests made to any path so far.
    pub fn all_requests(&self) -> u64 {
        self.state
            .all_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests made for a recording so far (media and deletes).
    pub fn requests(&self, recording_sid: &str) -> u32 {
        self.state
            .lock()
            .get(recording_sid)
            .map_or(0, |h| h.requests)
    }

    /// The size and SHA-256 (hex) of the media held for a recording: what its archive must be.
    pub fn expected(&self, recording_sid: &str) -> Option<(u64, String)> {
        let recording = self.state.lock().get(recording_sid)?.recording.clone()?;
        Some((recording.wav_len(), wav_sha256(&recording, recording_sid)))
    }

    /// Recordings held that were neither served whole nor deleted yet.
    pub fn pending(&self) -> usize {
        self.state
            .lock()
            .values()
            .filter(|h| h.recording.is_some() && h.served == 0 && !h.deleted)
            .count()
    }

    pub fn deleted(&self, recording_sid: &str) -> bool {
        self.state.is_deleted(recording_sid)
    }
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl MediaState {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.recordings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the recording was deleted from "Twilio".
    pub(crate) fn is_deleted(&self, recording_sid: &str) -> bool {
        self.lock()
            .get(recording_sid)
            .is_some_and(|held| held.deleted)
    }

    pub(crate) fn count_request(&self) {
        self.all_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The request is for our account and carries its credentials.
    pub(crate) fn authorized(&self, account: &str, headers: &HeaderMap) -> bool {
        if account != self.account_sid {
            return false;
        }
        let encode = |user: &str, password: &str| {
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        given == encode(&self.account_sid, &self.auth_token)
            || self
                .api_keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|(sid, secret)| given == encode(sid, secret))
    }
}

fn status(code: StatusCode) -> Response {
    let mut response = code.into_response();
    if code == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
    }
    response
}

async fn fetch(
    State(state): State<Arc<MediaState>>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    state.count_request();
    let (sid, content_type) = match file.rsplit_once('.') {
        Some((sid, "wav")) => (sid, "audio/x-wav"),
        Some((sid, "mp3")) => (sid, "audio/mpeg"),
        _ => return status(StatusCode::NOT_FOUND),
    };
    let recording = {
        let mut held = state.lock();
        let Some(entry) = held.get_mut(sid) else {
            return status(StatusCode::NOT_FOUND);
        };
        // Counted whatever the answer, so a test sees every try, refused ones too.
        entry.requests += 1;
        if !state.authorized(&account, &headers) {
            return status(StatusCode::UNAUTHORIZED);
        }
        let Some(recording) = entry.recording.as_mut().filter(|_| !entry.deleted) else {
            return status(StatusCode::NOT_FOUND);
        };
        if let Some(code) = recording.faults.pop_front() {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = status(code);
            let extra = match code {
                StatusCode::TOO_MANY_REQUESTS => (header::RETRY_AFTER, &recording.retry_after),
                _ => (header::LOCATION, &recording.redirect_to),
            };
            if let (name, Some(value)) = extra
                && let Ok(value) = header::HeaderValue::from_str(value)
            {
                response.headers_mut().insert(name, value);
            }
            return response;
        }
        let recording = recording.clone();
        entry.served += 1;
        recording
    };
    // `Range: bytes=N-`, as the storage behind Twilio's media URLs serves it: a 206 from
    // byte N (a worker resuming a long archive asks for the rest).
    let len = recording.wav_len();
    let from = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&from| from > 0);
    if from.is_some_and(|from| from >= len) {
        return status(StatusCode::RANGE_NOT_SATISFIABLE);
    }
    let mut skip = from.unwrap_or(0);
    let chunks = wav_chunks(&recording, sid).filter_map(move |mut chunk| {
        if skip >= chunk.len() as u64 {
            skip -= chunk.len() as u64;
            return None;
        }
        let rest = chunk.split_off(skip as usize);
        skip = 0;
        Some(rest)
    });
    let stream = futures::stream::iter(chunks).map(Ok::<_, Infallible>);
    let response = Response::builder().header(header::CONTENT_TYPE, content_type);
    let response = match from {
        Some(from) => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {from}-{}/{len}", len - 1),
            )
            .header(header::CONTENT_LENGTH, len - from),
        None => response.header(header::CONTENT_LENGTH, len),
    };
    response
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

async fn delete(
    State(state): State<Arc<MediaState>>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    state.count_request();
    if !state.authorized(&account, &headers) {
        return status(StatusCode::UNAUTHORIZED);
    }
    let sid = file.strip_suffix(".json").unwrap_or(&file);
    let mut held = state.lock();
    match held.get_mut(sid) {
        Some(entry) if !entry.deleted => {
            entry.requests += 1;
            entry.deleted = true;
            status(StatusCode::NO_CONTENT)
        }
        _ => status(StatusCode::NOT_FOUND),
    }
}

/// The WAV file of a recording, in chunks: a RIFF header, then deterministic noise seeded by
/// the recording's SID, so that every fetch of one recording returns the same bytes.
pub fn wav_chunks(recording: &Recording, sid: &str) -> impl Iterator<Item = Bytes> + use<> {
    let data_len = recording.data_len();
    let channels = recording.channels;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(if recording.not_audio {
        b"JUNK"
    } else {
        b"RIFF"
    });
    header.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&channels.to_le_bytes());
    header.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    header.extend_from_slice(&(SAMPLE_RATE * u32::from(channels) * 2).to_le_bytes());
    header.extend_from_slice(&(channels * 2).to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&(data_len as u32).to_le_bytes());
    let mut state = Sha256::digest(sid.as_bytes())[..8]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        | 1;
    let mut left = data_len;
    std::iter::once(Bytes::from(header)).chain(std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK as u64) as usize;
        left -= n as u64;
        let mut chunk = vec![0u8; n];
        for pair in chunk.chunks_mut(8) {
            // xorshift64: cheap, deterministic, not silence.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            pair.copy_from_slice(&bytes[..pair.len()]);
        }
        Some(Bytes::from(chunk))
    }))
}

/// The SHA-256 (hex) of a recording's WAV file, as an archive should store it.
pub fn wav_sha256(recording: &Recording, sid: &str) -> String {
    let mut hash = Sha256::new();
    for chunk in wav_chunks(recording, sid) {
        hash.update(&chunk);
    }
    hex::encode(hash.finalize())
}
