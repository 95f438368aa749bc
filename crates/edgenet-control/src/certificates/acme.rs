//! Edge certificates from an ACME CA (RFC 8555) through `instant-acme`: an order for the
//! zone's names, one challenge per name (HTTP-01, or TLS-ALPN-01 where port 80 is not used)
//! streamed to every PoP as a `challenge` object, and only once every live PoP has applied the
//! version that carries it is the CA told to validate: under anycast the CA may reach any PoP.
//! Then a CSR for a fresh P-256 key (made here, sealed at rest like an uploaded one), the chain,
//! and the CA's renewal information (RFC 9773) where its directory offers it.
//!
//! The account is made on first use and its credentials kept in a file (mode 0600) beside the
//! database, or read from the file the operator names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edgenet_protocol::{ChallengeProvision, ChallengeType, Kind};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};

use crate::api::App;
use crate::store::Owner;

/// How long every connected PoP has to apply a challenge before the order is given up.
pub const PROPAGATION: Duration = Duration::from_secs(60);
/// How long the CA has to validate and to issue.
const VALIDATION: Duration = Duration::from_secs(90);

/// Where and how to order.
#[derive(Debug, Clone)]
pub struct AcmeOptions {
    /// The directory URL.
    pub directory: String,
    /// A PEM file of the CA that signed the directory's TLS certificate (a test CA such as
    /// pebble's); none: the system's trust store.
    pub directory_ca: Option<PathBuf>,
    /// The account's credentials file (made on first use when missing).
    pub account: PathBuf,
    /// Contact URIs for a new account (`mailto:ops@example.com`).
    pub contact: Vec<String>,
    /// The challenge to answer.
    pub challenge: ChallengeType,
}

/// An ACME client (cheap to clone).
#[derive(Clone)]
pub struct Acme {
    options: Arc<AcmeOptions>,
    account: Arc<tokio::sync::OnceCell<Account>>,
}

impl Acme {
    /// A client for these options (the account is loaded or made at the first order).
    pub fn new(options: AcmeOptions) -> Acme {
        Acme {
            options: Arc::new(options),
            account: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The directory URL.
    pub fn directory(&self) -> &str {
        &self.options.directory
    }

    /// The challenge type it answers.
    pub fn challenge(&self) -> ChallengeType {
        self.options.challenge
    }

    async fn account(&self) -> Result<&Account, String> {
        self.account
            .get_or_try_init(|| async {
                let o = &self.options;
                let builder = || match &o.directory_ca {
                    Some(ca) => Account::builder_with_root(ca)
                        .map_err(|e| format!("acme.directory_ca {}: {e}", ca.display())),
                    None => Account::builder().map_err(|e| format!("the ACME client: {e}")),
                };
                if let Ok(text) = std::fs::read_to_string(&o.account) {
                    let creds: AccountCredentials = serde_json::from_str(&text)
                        .map_err(|e| format!("{}: not ACME account credentials: {e}", o.account.display()))?;
                    return builder()?
                        .from_credentials(creds)
                        .await
                        .map_err(|e| format!("the ACME account in {}: {e}", o.account.display()));
                }
                let contact: Vec<&str> = o.contact.iter().map(String::as_str).collect();
                let (account, creds) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        o.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| format!("creating an ACME account at {}: {e}", o.directory))?;
                let text = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
                crate::write_private(&o.account, &text)
                    .map_err(|e| format!("{}: {e}", o.account.display()))?;
                tracing::info!(directory = %o.directory, id = %account.id(), file = %o.account.display(), "ACME account created");
                Ok(account)
            })
            .await
    }

    /// Orders a certificate for `hosts` as edge certificate `id`: the chain and key (PEM), and
    /// when the CA suggests renewing it (Unix seconds), or why not.
    pub async fn order(
        &self,
        app: &Arc<App>,
        id: &str,
        hosts: &[String],
    ) -> Result<(String, String, Option<i64>), String> {
        let started = std::time::Instant::now();
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = hosts.iter().cloned().map(Identifier::Dns).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let mut tokens = Vec::new();
        let outcome = self.validate(app, &mut order, &mut tokens).await;
        for token in &tokens {
            if let Err(e) = app
                .put(Kind::Challenge, token, None, false, None, Owner::Operator)
                .await
            {
                tracing::warn!(%token, error = %e, "cannot withdraw an ACME challenge");
            }
        }
        outcome?;
        let key = rcgen::KeyPair::generate().map_err(|e| format!("key: {e}"))?;
        let mut params =
            rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| format!("names: {e}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| format!("CSR: {e}"))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain = order
            .poll_certificate(&retries())
            .await
            .map_err(|e| format!("the certificate: {e}"))?;
        let renew_from = self.renewal_window(account, &chain).await;
        tracing::info!(%id, hosts = ?hosts, took = ?started.elapsed(), directory = %self.options.directory, "ACME order valid");
        Ok((chain, key.serialize_pem(), renew_from))
    }

    /// Streams each authorization's challenge, waits for every live PoP to apply it, tells
    /// the CA, and waits for the order to be ready. Each streamed token goes into `tokens`.
    async fn validate(
        &self,
        app: &Arc<App>,
        order: &mut instant_acme::Order,
        tokens: &mut Vec<String>,
    ) -> Result<(), String> {
        let kind = self.options.challenge;
        let wanted = match kind {
            ChallengeType::Http01 => instant_acme::ChallengeType::Http01,
            ChallengeType::TlsAlpn01 => instant_acme::ChallengeType::TlsAlpn01,
        };
        let mut version = 0;
        let mut ready = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(a) = authorizations.next().await {
            let mut a = a.map_err(|e| format!("authorization: {e}"))?;
            if a.status == AuthorizationStatus::Valid {
                continue;
            }
            let domain = a.identifier().to_string();
            let url = a.url().to_string();
            let challenge = a.challenge(wanted.clone()).ok_or_else(|| {
                format!(
                    "the CA offers no {} challenge for {domain}",
                    kind_name(kind)
                )
            })?;
            let provision = ChallengeProvision {
                kind,
                domain: domain.clone(),
                token: challenge.token.clone(),
                key_authorization: challenge.key_authorization().as_str().to_string(),
            };
            let body = serde_json::to_value(&provision).map_err(|e| e.to_string())?;
            version = app
                .put(
                    Kind::Challenge,
                    &provision.token,
                    Some(&body),
                    true,
                    None,
                    Owner::Operator,
                )
                .await
                .map_err(|e| format!("streaming the challenge: {e}"))?;
            tokens.push(provision.token.clone());
            ready.push((url, domain));
        }
        if !ready.is_empty() {
            wait_for_pops(app, version).await?;
        }
        let mut authorizations = order.authorizations();
        while let Some(a) = authorizations.next().await {
            let mut a = a.map_err(|e| format!("authorization: {e}"))?;
            if !ready.iter().any(|(url, _)| url == a.url()) {
                continue;
            }
            let mut challenge = a
                .challenge(wanted.clone())
                .ok_or_else(|| "the challenge went away".to_string())?;
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("telling the CA the challenge is ready: {e}"))?;
        }
        let status = order
            .poll_ready(&retries())
            .await
            .map_err(|e| format!("validation: {e}"))?;
        if status == OrderStatus::Ready {
            return Ok(());
        }
        // Say which name failed and what the CA saw.
        let mut why = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(a)) = authorizations.next().await {
            for c in &a.challenges {
                if let Some(e) = &c.error {
                    why.push(format!(
                        "{}: {}",
                        a.identifier(),
                        e.detail.clone().unwrap_or_else(|| format!("{e:?}"))
                    ));
                }
            }
        }
        Err(format!(
            "the CA did not validate the {} challenge ({status:?}): {}",
            kind_name(kind),
            if why.is_empty() {
                "no detail".into()
            } else {
                why.join("; ")
            }
        ))
    }

    /// When the CA's renewal information suggests renewing `chain`'s leaf (a random moment in
    /// its window, as RFC 9773 asks), where the directory offers it.
    async fn renewal_window(&self, account: &Account, chain: &str) -> Option<i64> {
        let id = certificate_identifier(chain)?;
        match account.renewal_info(&id).await {
            Ok((info, _)) => {
                let start = info.suggested_window.start.unix_timestamp();
                let end = info.suggested_window.end.unix_timestamp();
                let spread = (end - start).max(0) as u64;
                let offset = if spread == 0 {
                    0
                } else {
                    u64::from_str_radix(&crate::api::random_hex(8), 16).unwrap_or(0) % spread
                };
                Some(start + offset as i64)
            }
            Err(instant_acme::Error::Unsupported(_)) => None,
            Err(e) => {
                tracing::warn!(error = %e, "the CA's renewal information did not answer: renewing by the certificate's lifetime");
                None
            }
        }
    }
}

fn retries() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(VALIDATION)
}

fn kind_name(kind: ChallengeType) -> &'static str {
    match kind {
        ChallengeType::Http01 => "http-01",
        ChallengeType::TlsAlpn01 => "tls-alpn-01",
    }
}

/// RFC 9773's identifier of `chain`'s leaf: its authority key identifier and serial.
fn certificate_identifier(chain: &str) -> Option<instant_acme::CertificateIdentifier<'static>> {
    use x509_parser::extensions::ParsedExtension;
    let der = rustls_pemfile::certs(&mut chain.as_bytes()).next()?.ok()?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).ok()?;
    let aki = leaf
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    let serial = leaf.tbs_certificate.raw_serial().to_vec();
    Some(
        instant_acme::CertificateIdentifier::new(
            rustls::pki_types::Der::from_slice(&aki),
            rustls::pki_types::Der::from_slice(&serial),
        )
        .into_owned(),
    )
}

/// Waits until every connected PoP has applied `version` (the challenges' version).
async fn wait_for_pops(app: &App, version: i64) -> Result<(), String> {
    let outcome = crate::stream::wait_applied(app, version, PROPAGATION)
        .await
        .map_err(|e| e.to_string())?;
    if outcome.pending.is_empty() {
        return Ok(());
    }
    Err(format!(
        "PoPs {} did not apply the challenge (version {version}) within {PROPAGATION:?}",
        outcome.pending.join(", ")
    ))
}
