//! The Secrets Manager token cache and the SQS queue against the emulator, and the webhook
//! contract when either is down.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use voicehooks::aws::RequestCounter;
use voicehooks::config::local;
use voicehooks::events::Envelope;
use voicehooks::queue::{EventQueue, SqsEventQueue};
use voicehooks::secrets::{AuthTokens, SecretsManagerTokens};
use voicehooks::twilio::signature::compute_signature;
use voicehooks::twilio::{CallStatus, StatusCallback};
use voicehooks::webhook::{Acknowledger, WebhookRequest};
use voicehooks_tests::{Aws, aws, call_sid, status_params};

const TTL: Duration = Duration::from_secs(300);

fn counted_tokens(aws: &Aws, secret_id: &str) -> (SecretsManagerTokens, RequestCounter) {
    let counter = RequestCounter::default();
    let config = aws_sdk_secretsmanager::config::Builder::from(&aws.sdk)
        .interceptor(counter.clone())
        .build();
    (
        SecretsManagerTokens::new(
            aws_sdk_secretsmanager::Client::from_conf(config),
            secret_id,
            TTL,
        ),
        counter,
    )
}

async fn rotate(aws: &Aws, new_token: &str) {
    aws_sdk_secretsmanager::Client::new(&aws.sdk)
        .put_secret_value()
        .secret_id(&aws.resources.twilio_secret_id)
        .secret_string(
            serde_json::json!({"account_sid": local::ACCOUNT_SID, "auth_token": new_token})
                .to_string(),
        )
        .send()
        .await
        .expect("rotation");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_read_once_then_cached() {
    let aws = aws("secrets").await;
    let (tokens, counter) = counted_tokens(&aws, &aws.resources.twilio_secret_id);
    for _ in 0..5 {
        assert_eq!(
            tokens.current().await.unwrap().auth_token,
            local::AUTH_TOKEN
        );
    }
    assert_eq!(
        counter.count("Secrets Manager.GetSecretValue"),
        1,
        "{:?}",
        counter.snapshot()
    );
    println!("Secrets Manager reads for 5 token lookups: 1");
    // The previous version is the placeholder the template generated (the local credentials
    // were put over it, as after a first deploy); asking costs one read, then nothing.
    for _ in 0..2 {
        let previous = tokens.previous().await.unwrap().expect("the placeholder");
        assert_eq!(previous.account_sid, "AC-set-me-with-put-secret-value");
        assert_ne!(previous.auth_token, local::AUTH_TOKEN);
    }
    assert_eq!(counter.count("Secrets Manager.GetSecretValue"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_show_the_token_in_debug_output() {
    let aws = aws("secrets").await;
    let (tokens, _) = counted_tokens(&aws, &aws.resources.twilio_secret_id);
    let shown = format!("{:?}", tokens.current().await.unwrap());
    assert!(
        !shown.contains(local::AUTH_TOKEN) && shown.contains("redacted"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_rotation_both_tokens_validate_and_a_stale_cache_refreshes() {
    let aws = aws("secrets").await;
    let (tokens, counter) = counted_tokens(&aws, &aws.resources.twilio_secret_id);
    let tokens = tokens.with_min_refresh_interval(Duration::ZERO);
    assert_eq!(
        tokens.current().await.unwrap().auth_token,
        local::AUTH_TOKEN
    );
    rotate(&aws, "rotated-token-000000000000000000").await;
    // The cache still holds the old token; a refresh finds the new one.
    assert_eq!(
        tokens.current().await.unwrap().auth_token,
        local::AUTH_TOKEN
    );
    let fresh = tokens
        .refresh_current()
        .await
        .unwrap()
        .expect("the token changed");
    assert_eq!(fresh.auth_token, "rotated-token-000000000000000000");
    assert_eq!(
        tokens.previous().await.unwrap().unwrap().auth_token,
        local::AUTH_TOKEN
    );
    assert!(
        tokens.refresh_current().await.unwrap().is_none(),
        "unchanged since the last read"
    );
    assert!(counter.count("Secrets Manager.GetSecretValue") <= 5);

    // A webhook signed with either token is accepted by a freshly started function.
    let queue = SqsEventQueue::new(
        aws_sdk_sqs::Client::new(&aws.sdk),
        &aws.resources.status_queue_url,
    );
    let (fresh_tokens, _) = counted_tokens(&aws, &aws.resources.twilio_secret_id);
    let acknowledger = Acknowledger::new(local::PUBLIC_BASE_URL, queue, fresh_tokens);
    for token in [
        local::AUTH_TOKEN,
        "rotated-token-000000000000000000",
        "not-a-token",
    ] {
        let reply = acknowledger.call_status(&request(token).as_webhook()).await;
        let expected = if token == "not-a-token" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::NO_CONTENT
        };
        assert_eq!(reply.status, expected, "signed with {token}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_manager_down_answers_503_and_enqueues_nothing() {
    let aws = aws("secrets").await;
    let queue = SqsEventQueue::new(
        aws_sdk_sqs::Client::new(&aws.sdk),
        &aws.resources.status_queue_url,
    );
    let (tokens, _) = counted_tokens(&aws, "voicehooks-local/no-such-secret");
    let reply = Acknowledger::new(local::PUBLIC_BASE_URL, queue, tokens)
        .call_status(&request(local::AUTH_TOKEN).as_webhook())
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "auth token unavailable, retry later\n");
    assert_eq!(depth(&aws).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_reaches_sqs_with_filterable_attributes() {
    let aws = aws("queue").await;
    let queue = SqsEventQueue::new(
        aws_sdk_sqs::Client::new(&aws.sdk),
        &aws.resources.status_queue_url,
    );
    let params = status_params(&call_sid(1), CallStatus::Ringing, Some(1));
    let envelope = Envelope::call_status(
        &StatusCallback::parse(&params).unwrap(),
        &params,
        Some("tok"),
    );
    queue.send(&envelope).await.unwrap();
    let received = aws_sdk_sqs::Client::new(&aws.sdk)
        .receive_message()
        .queue_url(&aws.resources.status_queue_url)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let message = &received.messages()[0];
    assert_eq!(
        Envelope::from_json(message.body().unwrap()).unwrap(),
        envelope
    );
    let attributes = message.message_attributes().unwrap();
    assert_eq!(attributes["kind"].string_value(), Some("call.status"));
    assert_eq!(
        attributes["call_sid"].string_value(),
        Some(call_sid(1).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_that_is_gone_answers_503() {
    let aws = aws("queue").await;
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    sqs.delete_queue()
        .queue_url(&aws.resources.status_queue_url)
        .send()
        .await
        .unwrap();
    let queue = Arc::new(SqsEventQueue::new(sqs, &aws.resources.status_queue_url));
    let (tokens, _) = counted_tokens(&aws, &aws.resources.twilio_secret_id);
    let reply = Acknowledger::new(local::PUBLIC_BASE_URL, queue, tokens)
        .call_status(&request(local::AUTH_TOKEN).as_webhook())
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "event not queued, retry later\n");
}

async fn depth(aws: &Aws) -> usize {
    let output = aws_sdk_sqs::Client::new(&aws.sdk)
        .receive_message()
        .queue_url(&aws.resources.status_queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    output.messages().len()
}

struct Request {
    headers: HeaderMap,
    body: Vec<u8>,
}

fn request(token: &str) -> Request {
    let params = status_params(&call_sid(9), CallStatus::Ringing, Some(1));
    let signature = compute_signature(
        token,
        &format!("{}/twilio/status", local::PUBLIC_BASE_URL),
        params.iter(),
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(
        "x-twilio-signature",
        HeaderValue::from_str(&signature).unwrap(),
    );
    Request {
        headers,
        body: params.to_form().into_bytes(),
    }
}

impl Request {
    fn as_webhook(&self) -> WebhookRequest<'_> {
        WebhookRequest {
            method: &Method::POST,
            headers: &self.headers,
            raw_path: "/twilio/status",
            raw_query: "",
            body: &self.body,
        }
    }
}
