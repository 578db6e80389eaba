//! Identity rules, access policy and identity header names, compiled from
//! one configuration: built the same way, once, by `serve`, a SIGHUP
//! reload, `check-config` and `explain`.

use crate::config::Config;
use crate::headers::IdentityHeaders;
use crate::identity::Mapper;
use crate::policy::Policy;
use crate::settings::ConfigError;

pub struct Rules {
    /// The configuration they were compiled from.
    pub config: Config,
    pub mapper: Mapper,
    pub policy: Policy,
    pub headers: IdentityHeaders,
    /// Sessions keep their claims (a policy expression or `debug_explain`
    /// reads them); otherwise they keep none.
    pub keep_claims: bool,
}

impl Rules {
    /// Compiles; errors name the key at fault. Reads no file (upstream
    /// credentials are read where they are sent, by the service).
    pub fn new(config: Config) -> Result<Rules, ConfigError> {
        let group_paths = config.identity.group_paths;
        let policy = Policy::new(config.default_policy, &config.policy, group_paths)?;
        Ok(Rules {
            keep_claims: policy.reads_claims() || config.debug_explain,
            mapper: Mapper::new(&config.identity, &config.role_map)?,
            policy,
            headers: IdentityHeaders::new(&config.headers)?,
            config,
        })
    }
}
