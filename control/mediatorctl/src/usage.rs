//! `mediatorctl usage …`: PSTN usages, the names that tie voice routes to callers' policies.

use clap::Args;
use mediator_proto::control::v1 as pb;
use mediator_topology::proto as convert;
use serde_json::Value;

use crate::output::{Show, bad_reply, meta_fields, or_dash, revision};
use crate::resource::{
    Help, NoFilter, NoMoreVerbs, PAGE_SIZE, Resource, RevisionArg, VerbHelp, field_mask, rpcs,
};
use crate::{Failure, usage_error};

pub const EXAMPLES: &str = "\
Examples:
  mediatorctl usage add Local --priority 10 --description \"Calls within 425\"
  mediatorctl usage set \"Long Distance\" --priority 20
  mediatorctl usage list
  mediatorctl usage remove International";

const ADD_EXAMPLES: &str = "\
Examples:
  mediatorctl usage add Local --priority 10 --description \"Calls within 425\"
  mediatorctl usage add \"Long Distance\" --priority 20";

const SET_EXAMPLES: &str = "\
Examples:
  mediatorctl usage set Local --priority 5
  mediatorctl usage set Local --description \"\" --revision 2";

const SHOW_EXAMPLES: &str = "\
Examples:
  mediatorctl usage show Local
  mediatorctl --output json usage show \"Long Distance\"";

const LIST_EXAMPLES: &str = "\
Examples:
  mediatorctl usage list
  mediatorctl usage list --output json";

const REMOVE_EXAMPLES: &str = "\
Examples:
  mediatorctl usage remove International
  mediatorctl usage remove Local --revision 3";

/// `mediatorctl usage …`.
#[derive(Debug)]
pub struct Usages;

impl Resource for Usages {
    const NOUN: &'static str = "usage";
    const HELP: Help = Help {
        add: VerbHelp::new("Create a PSTN usage", ADD_EXAMPLES),
        set: VerbHelp::new("Change a usage's priority or description", SET_EXAMPLES),
        show: VerbHelp::new("Show one usage", SHOW_EXAMPLES),
        list: VerbHelp::new("List usages", LIST_EXAMPLES),
        remove: VerbHelp::new(
            "Delete a usage (no route may still use it)",
            REMOVE_EXAMPLES,
        ),
        key: "The usage's name",
        remove_key: "The usage's name",
    };

    type Item = pb::PstnUsage;
    type Add = UsageAdd;
    type Set = UsageSet;
    type Filter = NoFilter;
    type More = NoMoreVerbs;
    type CreateRequest = pb::CreatePstnUsageRequest;
    type UpdateRequest = pb::UpdatePstnUsageRequest;
    type ListRequest = pb::ListPstnUsagesRequest;

    fn create_request(a: &UsageAdd) -> Result<pb::CreatePstnUsageRequest, Failure> {
        Ok(pb::CreatePstnUsageRequest {
            usage: Some(pb::PstnUsage {
                name: a.name.clone(),
                priority: a.priority,
                description: a.description.clone(),
                meta: None,
            }),
        })
    }

    fn update_request(
        a: &UsageSet,
        _current: Option<&pb::PstnUsage>,
    ) -> Result<pb::UpdatePstnUsageRequest, Failure> {
        let mut usage = pb::PstnUsage {
            name: a.name.clone(),
            ..Default::default()
        };
        let mut paths = Vec::new();
        if let Some(p) = a.priority {
            usage.priority = p;
            paths.push("priority");
        }
        if let Some(d) = &a.description {
            usage.description = d.clone();
            paths.push("description");
        }
        if paths.is_empty() {
            return Err(usage_error(format!(
                "nothing to change for usage '{}': give --priority and/or --description",
                a.name
            )));
        }
        Ok(pb::UpdatePstnUsageRequest {
            usage: Some(usage),
            update_mask: field_mask(&paths),
            expected_revision: a.revision.expected(),
        })
    }

    fn list_request(_: &NoFilter, page_token: String) -> pb::ListPstnUsagesRequest {
        pb::ListPstnUsagesRequest {
            page_size: PAGE_SIZE,
            page_token,
        }
    }

    rpcs! {
        create: create_pstn_usage,
        get: get_pstn_usage,
        update: update_pstn_usage,
        delete: delete_pstn_usage,
        list: list_pstn_usages => usages,
    }
}

#[derive(Args, Debug)]
pub struct UsageAdd {
    /// The usage's name, e.g. Local.
    pub name: String,
    /// Usages are tried in ascending priority when a call names none.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub priority: u32,
    /// Free text.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
}

#[derive(Args, Debug)]
pub struct UsageSet {
    /// The usage's name.
    pub name: String,
    /// Usages are tried in ascending priority when a call names none.
    #[arg(long, value_name = "N")]
    pub priority: Option<u32>,
    /// Free text ("" clears it).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    #[command(flatten)]
    pub revision: RevisionArg,
}

impl Show for pb::PstnUsage {
    const PLURAL: &'static str = "PSTN usages";
    const COLUMNS: &'static [&'static str] = &["NAME", "PRIORITY", "DESCRIPTION", "REVISION"];

    fn json(&self) -> Result<Value, Failure> {
        let u = mediator_topology::model::PstnUsage::try_from(self)
            .map_err(|e| bad_reply("usage", &self.name, e))?;
        Ok(convert::view(&u, self.meta.as_ref()))
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.priority.to_string(),
            or_dash(self.description.clone()),
            revision(self.meta.as_ref()),
        ]
    }

    fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("name".into(), self.name.clone()),
            ("priority".into(), self.priority.to_string()),
            ("description".into(), or_dash(self.description.clone())),
        ];
        f.extend(meta_fields(self.meta.as_ref()));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(priority: Option<u32>, description: Option<&str>) -> UsageSet {
        UsageSet {
            name: "Local".into(),
            priority,
            description: description.map(String::from),
            revision: RevisionArg { revision: Some(2) },
        }
    }

    #[test]
    fn an_empty_description_is_still_a_change() {
        let r = Usages::update_request(&set(None, Some("")), None).expect("request");
        assert_eq!(r.update_mask.unwrap_or_default().paths, ["description"]);
        assert_eq!(r.expected_revision, 2);
        let r = Usages::update_request(&set(Some(5), None), None).expect("request");
        assert_eq!(r.update_mask.unwrap_or_default().paths, ["priority"]);
        assert!(matches!(
            Usages::update_request(&set(None, None), None),
            Err(Failure::Usage(_))
        ));
    }
}
