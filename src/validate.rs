//! The whole-config check `check`, `run` and reload share: `config`'s own
//! sections, then each feature module's validator for its section, so
//! `config` itself imports no feature module.

use std::path::Path;

use crate::config::{Config, ConfigError, Problem};

/// Every problem in `cfg`, not just the first.
pub fn validate(cfg: &Config) -> Vec<Problem> {
    let mut p = cfg.validate_sections();
    crate::tls::validate_config(cfg, &mut p);
    crate::identity::validate_config(cfg, &mut p);
    crate::policy::validate_config(cfg, &mut p);
    if let Some(saml) = &cfg.saml {
        crate::saml::validate_config(cfg, saml, &mut p);
    }
    if let Some(scim) = &cfg.scim {
        crate::scim::validate_config(cfg, scim, &mut p);
    }
    crate::directory::trust::validate_config(cfg, &mut p);
    crate::webhook::validate_config(cfg, &mut p);
    p
}

/// Loads `path` (and the environment) and validates the result.
pub fn load_and_validate(path: &Path) -> Result<Config, ConfigError> {
    let cfg = Config::load(path)?;
    let problems = validate(&cfg);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError(problems))
    }
}
