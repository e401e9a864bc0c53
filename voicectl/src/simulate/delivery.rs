//! How Twilio delivers one request to a webhook URL, as its docs say and no more kindly: the
//! URL's connection overrides (`#ct=…&rt=…&tt=…&rc=…&rp=…`, `voicehooks::twilio::overrides`), or
//! Twilio's defaults without them, decide the connect timeout, the read timeout, the total
//! budget, how many attempts and which failures are retried. By default that is one retry of a
//! failed connection and nothing else: a 5xx, a 4xx or a slow answer is final. Twilio retries
//! at once, with no backoff, and never past `tt`. The fragment is never sent; whether Twilio
//! signs it is undocumented, so the stand-in signs with it or without it, per request, from
//! the seed.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use voicehooks::twilio::Params;
use voicehooks::twilio::overrides::{ConnectionOverrides, Failure};
use voicehooks::twilio::signature::compute_signature;

/// Which URL Twilio signs: undocumented when the URL has a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentSigning {
    /// The URL without its fragment.
    Without,
    /// The URL as given, fragment included.
    With,
    /// Either, decided per request from `seed` (the strict choice: both must work).
    Either { seed: u64 },
}

/// What one delivery came to.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub attempts: u32,
    /// Why each retry was made.
    pub retried: Vec<Failure>,
    /// The answer Twilio accepted, or why it gave up.
    pub result: Result<Answer, GaveUp>,
}

/// The answer to the last attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
    /// From sending the attempt to the whole answer.
    pub latency_us: u64,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why Twilio stopped trying.
#[derive(Debug, Clone, Serialize)]
pub struct GaveUp {
    /// The last attempt's failure, in `rp`'s terms (`None`: one no policy retries, such as a
    /// connection reset after connecting, or an override Twilio refuses).
    pub failure: Option<Failure>,
    pub why: String,
}

/// One attempt's result.
enum Attempt {
    Answered(Answer),
    Failed(Option<Failure>, String),
}

/// A webhook request as Twilio sends it: the form, its signature, Twilio's user agent and
/// (for callbacks) its idempotency token.
pub fn twilio_request(
    client: &reqwest::Client,
    target: &str,
    signature: &str,
    params: &Params,
    idempotency_token: Option<&str>,
) -> reqwest::RequestBuilder {
    let request = client
        .post(target)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .header("user-agent", "TwilioProxy/1.1")
        .body(params.to_form());
    match idempotency_token {
        Some(token) => request.header("i-twilio-idempotency-token", token),
        None => request,
    }
}

/// The HTTP side of delivery: clients by connect and read timeout (reqwest sets them per
/// client; its read timeout, like Twilio's `rt`, bounds the wait for each read, the first
/// byte of the answer included).
pub struct Deliverer {
    clients: Mutex<HashMap<(Duration, Duration), reqwest::Client>>,
    auth_token: String,
    signing: FragmentSigning,
}

impl Deliverer {
    pub fn new(auth_token: &str, signing: FragmentSigning) -> Self {
        Self {
            clients: Mutex::default(),
            auth_token: auth_token.to_owned(),
            signing,
        }
    }

    fn client(&self, connect: Duration, read: Duration) -> Result<reqwest::Client, String> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&(connect, read)) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .read_timeout(read)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        clients.insert((connect, read), client.clone());
        Ok(client)
    }

    /// The URL the signature covers for this request.
    fn signed_url<'u>(&self, public_url: &'u str, params: &Params) -> &'u str {
        let without = public_url
            .split_once('#')
            .map_or(public_url, |(base, _)| base);
        match self.signing {
            FragmentSigning::Without => without,
            FragmentSigning::With => public_url,
            FragmentSigning::Either { seed } => {
                let mut hasher = DefaultHasher::new();
                (seed, public_url).hash(&mut hasher);
                for pair in params.iter() {
                    pair.hash(&mut hasher);
                }
                if hasher.finish().is_multiple_of(2) {
                    without
                } else {
                    public_url
                }
            }
        }
    }

    /// Delivers `params` for `public_url` (the URL Twilio was given, overrides and all) to
    /// `target` (where that URL's route is served), as Twilio would.
    pub async fn deliver(
        &self,
        target: &str,
        public_url: &str,
        params: &Params,
        idempotency_token: Option<&str>,
    ) -> Delivery {
        let overrides = match ConnectionOverrides::of_url(public_url) {
            Ok((_, overrides)) => overrides,
            Err(e) => {
                return Delivery {
                    attempts: 0,
                    retried: Vec::new(),
                    result: Err(GaveUp {
                        failure: None,
                        why: e.to_string(),
                    }),
                };
            }
        };
        let signature = compute_signature(
            &self.auth_token,
            self.signed_url(public_url, params),
            params.iter(),
        );
        let started = Instant::now();
        let mut attempts = 0;
        let mut retried = Vec::new();
        let mut last = GaveUp {
            failure: None,
            why: "no time left".into(),
        };
        while attempts < overrides.max_attempts() {
            let left = overrides.total_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                last.why = format!(
                    "{}; the {:?} budget ran out",
                    last.why, overrides.total_timeout
                );
                break;
            }
            attempts += 1;
            let request = (params, signature.as_str(), idempotency_token);
            last = match self.attempt(target, &overrides, left, request).await {
                Attempt::Answered(answer) if answer.is_success() => {
                    return Delivery {
                        attempts,
                        retried,
                        result: Ok(answer),
                    };
                }
                Attempt::Answered(answer) => GaveUp {
                    failure: match answer.status {
                        400..=499 => Some(Failure::Status4xx),
                        500..=599 => Some(Failure::Status5xx),
                        // A redirect or any other status: no policy retries it.
                        _ => None,
                    },
                    why: format!("HTTP {}", answer.status),
                },
                Attempt::Failed(failure, why) => GaveUp { failure, why },
            };
            match last.failure {
                Some(failure)
                    if overrides.policy.retries(failure) && attempts < overrides.max_attempts() =>
                {
                    retried.push(failure)
                }
                _ => break,
            }
        }
        Delivery {
            attempts,
            retried,
            result: Err(last),
        }
    }

    /// One attempt within `left` of the total budget: connect within `ct`, then the answer
    /// within `rt`.
    async fn attempt(
        &self,
        target: &str,
        overrides: &ConnectionOverrides,
        left: Duration,
        (params, signature, idempotency_token): (&Params, &str, Option<&str>),
    ) -> Attempt {
        let connect = overrides.connect_timeout.min(left);
        let client = match self.client(connect, overrides.read_timeout) {
            Ok(client) => client,
            Err(e) => return Attempt::Failed(None, e),
        };
        let request = twilio_request(&client, target, signature, params, idempotency_token);
        let sent = Instant::now();
        // Whatever the per-read timeouts allow, the attempt ends with the total budget.
        let budget = left;
        let answer = tokio::time::timeout(budget, async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, content_type, body))
        })
        .await;
        match answer {
            Ok(Ok((status, content_type, body))) => Attempt::Answered(Answer {
                status,
                content_type,
                body,
                latency_us: sent.elapsed().as_micros() as u64,
            }),
            Ok(Err(e)) if e.is_connect() => Attempt::Failed(Some(Failure::Connect), e.to_string()),
            Ok(Err(e)) if e.is_timeout() => {
                Attempt::Failed(Some(Failure::ReadTimeout), e.to_string())
            }
            // Connected, then the connection broke: no retry policy names it.
            Ok(Err(e)) => Attempt::Failed(None, e.to_string()),
            Err(_) => Attempt::Failed(
                Some(Failure::ReadTimeout),
                format!("no answer within {budget:?}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use tokio::sync::oneshot;
    use voicehooks::twilio::overrides;
    use voicehooks::twilio::signature::validate_form;

    use super::*;

    /// What the test server does with each request in turn (then answers 204).
    #[derive(Clone, Copy)]
    enum Act {
        Status(u16),
        Hang(Duration),
    }

    #[derive(Default)]
    struct Seen {
        acts: VecDeque<Act>,
        /// Path and query as they arrived, and the signature header.
        requests: Vec<(String, String)>,
    }

    /// A webhook on a free loopback port, stopped when dropped.
    struct Server {
        url: String,
        seen: Arc<Mutex<Seen>>,
        _stop: oneshot::Sender<()>,
    }

    async fn server(acts: &[Act]) -> Server {
        let seen = Arc::new(Mutex::new(Seen {
            acts: acts.iter().copied().collect(),
            ..Seen::default()
        }));
        let state = seen.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let state = state.clone();
            async move {
                let act = {
                    let mut seen = state.lock().unwrap();
                    let signature = headers
                        .get("x-twilio-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.requests.push((uri.to_string(), signature));
                    seen.acts.pop_front()
                };
                match act {
                    Some(Act::Status(code)) => StatusCode::from_u16(code).unwrap(),
                    Some(Act::Hang(d)) => {
                        tokio::time::sleep(d).await;
                        StatusCode::NO_CONTENT
                    }
                    None => StatusCode::NO_CONTENT,
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Server {
            url,
            seen,
            _stop: stop,
        }
    }

    const PUBLIC: &str = "https://hooks.example.com/twilio/status";

    fn params() -> Params {
        [("CallSid", "CA1"), ("CallStatus", "ringing")]
            .into_iter()
            .collect()
    }

    async fn deliver(server: &Server, fragment: Option<&str>) -> Delivery {
        let public = match fragment {
            Some(f) => format!("{PUBLIC}#{f}"),
            None => PUBLIC.to_owned(),
        };
        Deliverer::new("token", FragmentSigning::Without)
            .deliver(
                &format!("{}/twilio/status", server.url),
                &public,
                &params(),
                None,
            )
            .await
    }

    fn attempts(server: &Server) -> usize {
        server.seen.lock().unwrap().requests.len()
    }

    #[tokio::test]
    async fn by_default_a_5xx_a_4xx_or_a_slow_answer_is_final() {
        for act in [Act::Status(503), Act::Status(500), Act::Status(429)] {
            let s = server(&[act]).await;
            let d = deliver(&s, None).await;
            assert!(d.result.is_err(), "given up");
            assert_eq!(attempts(&s), 1, "Twilio's default policy is ct only");
            assert!(d.retried.is_empty());
        }
    }

    #[tokio::test]
    async fn by_default_a_refused_connection_is_tried_twice() {
        // A port nothing listens on: connection refused, a `ct` failure.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = Deliverer::new("token", FragmentSigning::Without)
            .deliver(
                &format!("http://127.0.0.1:{port}/x"),
                PUBLIC,
                &params(),
                None,
            )
            .await;
        assert_eq!(d.attempts, 2, "rc defaults to 1");
        assert_eq!(d.retried, [Failure::Connect]);
        assert_eq!(d.result.unwrap_err().failure, Some(Failure::Connect));
    }

    #[tokio::test]
    async fn the_overrides_decide_what_is_retried() {
        let s = server(&[Act::Status(503), Act::Status(503)]).await;
        let d = deliver(&s, Some("rc=2&rp=5xx")).await;
        assert!(d.result.is_ok(), "the third attempt answered 204");
        assert_eq!(d.retried, [Failure::Status5xx, Failure::Status5xx]);
        assert_eq!(attempts(&s), 3);

        // rc counts retries: with rc=1 the second 503 is the last word.
        let s = server(&[Act::Status(503), Act::Status(503)]).await;
        assert!(deliver(&s, Some("rc=1&rp=5xx")).await.result.is_err());
        assert_eq!(attempts(&s), 2);

        // A 4xx is retried only when rp names it.
        let s = server(&[Act::Status(429)]).await;
        assert!(deliver(&s, Some("rc=2&rp=5xx")).await.result.is_err());
        assert_eq!(attempts(&s), 1);
        let s = server(&[Act::Status(429)]).await;
        assert!(deliver(&s, Some(overrides::CALLBACK)).await.result.is_ok());
        assert_eq!(attempts(&s), 2);
    }

    #[tokio::test]
    async fn a_read_timeout_is_retried_only_under_rt_and_never_past_tt() {
        let slow = Act::Hang(Duration::from_secs(3));
        let s = server(&[slow]).await;
        let d = deliver(&s, Some("rt=300&rc=2&rp=5xx")).await;
        assert_eq!(d.result.unwrap_err().failure, Some(Failure::ReadTimeout));
        assert_eq!(attempts(&s), 1, "rt is not in the policy");

        let s = server(&[slow, slow, slow, slow]).await;
        let started = Instant::now();
        let d = deliver(&s, Some("rt=400&tt=1000&rc=5&rp=rt")).await;
        assert!(d.result.is_err());
        assert!(
            started.elapsed() < Duration::from_millis(1400),
            "all attempts within tt: {:?}",
            started.elapsed()
        );
        assert!(
            attempts(&s) <= 3,
            "{} attempts in 1 s of 400 ms each",
            attempts(&s)
        );
    }

    #[tokio::test]
    async fn the_fragment_is_never_sent_and_either_url_may_be_signed() {
        let s = server(&[]).await;
        let public = format!("{PUBLIC}#{}", overrides::CALLBACK);
        let mut signed = Vec::new();
        for seed in 0..16 {
            Deliverer::new("token", FragmentSigning::Either { seed })
                .deliver(
                    &format!("{}/twilio/status", s.url),
                    &public,
                    &params(),
                    None,
                )
                .await;
        }
        for (path, signature) in &s.seen.lock().unwrap().requests {
            assert_eq!(path, "/twilio/status", "no fragment on the wire");
            let with = validate_form("token", &public, params().iter(), signature);
            let without = validate_form("token", PUBLIC, params().iter(), signature);
            assert!(with ^ without);
            signed.push(with);
        }
        assert!(
            signed.contains(&true) && signed.contains(&false),
            "both forms occur: {signed:?}"
        );
    }

    #[tokio::test]
    async fn an_override_twilio_refuses_is_never_delivered() {
        let s = server(&[]).await;
        let d = deliver(&s, Some("rp=6xx")).await;
        assert!(d.result.unwrap_err().why.contains("11243"));
        assert_eq!(attempts(&s), 0);
    }
}
