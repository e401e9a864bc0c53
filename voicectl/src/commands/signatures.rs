//! `voicectl sign` and `voicectl verify`: signatures computed, checked and explained.

use std::io::{BufRead, BufReader};
use std::process::ExitCode;

use serde::Serialize;
use voicectl::connect::{PublicBase, Stack};
use voicectl::signing::{self, Signed, TokenDiagnosis};
use voicehooks::twilio::signature::{self, Algorithm};

use super::{Output, Report, exit, json_of, push_line};
use crate::cli::{SignArgs, VerifyArgs};

pub async fn sign(
    args: SignArgs,
    stack: impl Future<Output = Stack>,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let settings = args.signature_settings.as_deref();
    let algorithm = Algorithm::from_settings(settings)
        .ok_or_else(|| anyhow::anyhow!("--signature-settings: unknown algorithm"))?;
    let token = match (args.auth_token, algorithm) {
        (Some(token), _) => token,
        (None, Algorithm::HmacSha1) => stack.await.signing_token(None).await?,
        (None, Algorithm::HmacSha256) => {
            let sid = settings.and_then(signature::settings_key);
            let credentials = stack.await.current_credentials().await?;
            credentials
                .shared_key_secrets(sid)
                .next()
                .map(str::to_owned)
                .ok_or_else(|| {
                    anyhow::anyhow!("the stack's secret has no such webhook_shared_keys")
                })?
        }
    };
    let signed = Signature {
        signed: signing::sign_with(algorithm, &token, &args.request.request()?),
        url_given: args.request.url.clone(),
    };
    out.print(&signed)?;
    Ok(ExitCode::SUCCESS)
}

/// `sign`: the signature, and the URL it covers when that is not the one given.
struct Signature {
    signed: Signed,
    url_given: Option<String>,
}

impl Report for Signature {
    fn json(&self) -> serde_json::Result<String> {
        json_of(&self.signed)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        if Some(&self.signed.url) != self.url_given.as_ref() {
            push_line!(out, "url: {}", self.signed.url);
        }
        push_line!(out, "{}", self.signed.signature);
        out
    }
}

/// `verify --batch`: each line carries its own token, so no stack is needed.
pub fn verify_batch(batch: &std::path::Path) -> anyhow::Result<ExitCode> {
    let input: Box<dyn BufRead> = if batch.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(batch).map_err(|e| {
            anyhow::anyhow!("cannot read {}: {e}", batch.display())
        })?))
    };
    signing::verify_batch(input, std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(
    args: VerifyArgs,
    stack: impl Future<Output = Stack>,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let request = args.request.request()?;
    let settings = args.signature_settings.as_deref();
    let Some(algorithm) = Algorithm::from_settings(settings) else {
        println!("INVALID: the settings name an algorithm Twilio's libraries do not know");
        return Ok(ExitCode::FAILURE);
    };
    // With a token given, the check is offline: the stack's base URL only from the
    // environment. Otherwise the stack's own, as deployed; a SharedKey signature is checked
    // with the secret's shared keys (the one the settings name).
    let (tokens, stack_base) = match args.auth_token {
        Some(token) => (vec![("given".to_owned(), token)], PublicBase::from_env()),
        None => {
            let stack = stack.await;
            let sid = settings.and_then(signature::settings_key);
            let tokens = stack
                .credentials()
                .await?
                .into_iter()
                .flat_map(|(stage, c)| match algorithm {
                    Algorithm::HmacSha1 => vec![(stage.to_owned(), c.auth_token.clone())],
                    Algorithm::HmacSha256 => c
                        .shared_keys(sid)
                        .map(|k| (format!("{stage} {}", k.sid), k.secret.clone()))
                        .collect(),
                })
                .collect();
            (tokens, stack.public_base_url().await)
        }
    };
    let tokens = signing::verify_with(
        algorithm,
        &tokens,
        &request,
        &args.signature.unwrap_or_default(),
    );
    let valid = tokens.iter().any(|r| r.diagnosis.valid);
    // Whether the stack would rebuild the URL Twilio signed: the usual cause of a 403 whose
    // signature is fine.
    let url_mismatch = stack_base
        .as_ref()
        .and_then(|base| signing::compare_with_stack(&request.url, base, valid));
    let verdict = Verdict {
        stack_public_base_url: stack_base,
        tokens,
        url_mismatch,
        valid,
    };
    out.print(&verdict)?;
    Ok(exit(verdict.valid && verdict.url_mismatch.is_none()))
}

/// `verify`: whether any token signs the request, and why not when none does. (Fields in
/// name order: the JSON's keys as they have always been printed.)
#[derive(Serialize)]
struct Verdict {
    stack_public_base_url: Option<PublicBase>,
    tokens: Vec<TokenDiagnosis>,
    url_mismatch: Option<String>,
    valid: bool,
}

impl Report for Verdict {
    fn json(&self) -> serde_json::Result<String> {
        json_of(self)
    }

    fn text(&self) -> String {
        let mut out = self.url_mismatch.clone().unwrap_or_default();
        out.push_str(&signing::explain(&self.tokens));
        out
    }
}
