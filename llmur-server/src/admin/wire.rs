//! Enums as they appear on the wire, with their OpenAPI schemas, and their core twins.
//!
//! Owns: [`UserRole`], [`MemberRole`], [`DeploymentAccess`], [`BalancingStrategy`],
//! [`Provider`], [`Price`]. Must not touch: anything but conversions.

use llmur_core::store::types::{self, AppRole, ProjectRole, ProviderKind};
use llmur_core::{Access, Strategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};

macro_rules! mirror {
    ($(#[$doc:meta])* $wire:ident <=> $core:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $wire {
            $($(#[$vdoc])* $variant),+
        }

        impl From<$wire> for $core {
            fn from(w: $wire) -> Self {
                match w {
                    $($wire::$variant => $core::$variant),+
                }
            }
        }

        impl From<$core> for $wire {
            fn from(c: $core) -> Self {
                match c {
                    $($core::$variant => $wire::$variant),+
                }
            }
        }
    };
}

mirror!(
    /// Application-wide role: `admin` manages everything; `member` what their projects allow.
    UserRole <=> AppRole { /** May manage everything. */ Admin, /** Project roles apply. */ Member }
);

mirror!(
    /// Role in a project: `admin` manages it (members, invites, keys), `developer` manages
    /// its keys, `guest` reads it.
    MemberRole <=> ProjectRole {
        /// Manages the project.
        Admin,
        /// Manages the project's keys.
        Developer,
        /// Reads the project.
        Guest
    }
);

mirror!(
    /// Who may use a deployment: `private` — keys linked to it; `public` — any valid key.
    DeploymentAccess <=> Access { /** Linked keys only. */ Private, /** Any valid key. */ Public }
);

mirror!(
    /// How a deployment spreads requests over its connections.
    BalancingStrategy <=> Strategy {
        /// Each connection in turn.
        RoundRobin,
        /// In turn, proportionally to the link weights.
        WeightedRoundRobin,
        /// Fewest requests in flight.
        LeastConnections,
        /// Fewest in flight relative to weight.
        WeightedLeastConnections
    }
);

/// A connection's provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Provider {
    /// OpenAI's API (or a compatible one).
    #[serde(rename = "openai/v1")]
    OpenAi,
    /// Azure OpenAI.
    #[serde(rename = "azure/openai")]
    AzureOpenAi,
}

impl From<ProviderKind> for Provider {
    fn from(p: ProviderKind) -> Self {
        match p {
            ProviderKind::OpenAi => Provider::OpenAi,
            ProviderKind::AzureOpenAi => Provider::AzureOpenAi,
        }
    }
}

/// A price in USD per one million tokens (overrides the default price table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Input (prompt) tokens.
    pub input_per_million: f64,
    /// Output (completion) tokens.
    pub output_per_million: f64,
}

impl Price {
    /// The core price (422 on a negative price).
    pub(crate) fn to_core(self) -> ApiResult<types::Price> {
        if [self.input_per_million, self.output_per_million]
            .iter()
            .any(|p| !p.is_finite() || *p < 0.0)
        {
            return Err(ApiError::invalid("prices must be non-negative numbers"));
        }
        Ok(types::Price {
            input_per_million: self.input_per_million,
            output_per_million: self.output_per_million,
        })
    }
}

impl From<types::Price> for Price {
    fn from(p: types::Price) -> Self {
        Self {
            input_per_million: p.input_per_million,
            output_per_million: p.output_per_million,
        }
    }
}
