//! `mediatorctl usage …`: PSTN usages, the names that tie voice routes to callers' policies.

use clap::{Args, Subcommand};
use mediator_proto::control::v1 as pb;
use mediator_topology::proto as convert;
use serde_json::Value;

use crate::output::{
    Show, bad_reply, meta_fields, or_dash, print_list, print_one, print_removed, revision,
};
use crate::{Ctx, Failure, PAGE_SIZE, RevisionArg, all_pages, usage_error};

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

#[derive(Subcommand, Debug)]
pub enum UsageCmd {
    /// Create a PSTN usage.
    #[command(after_help = ADD_EXAMPLES)]
    Add {
        /// The usage's name, e.g. Local.
        name: String,
        /// Usages are tried in ascending priority when a call names none.
        #[arg(long, value_name = "N", default_value_t = 0)]
        priority: u32,
        /// Free text.
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// Change a usage's priority or description.
    #[command(after_help = SET_EXAMPLES)]
    Set(UsageSet),
    /// Show one usage.
    #[command(after_help = SHOW_EXAMPLES)]
    Show {
        /// The usage's name.
        name: String,
    },
    /// List usages.
    #[command(after_help = LIST_EXAMPLES)]
    List,
    /// Delete a usage (no route may still use it).
    #[command(after_help = REMOVE_EXAMPLES)]
    Remove {
        /// The usage's name.
        name: String,
        #[command(flatten)]
        revision: RevisionArg,
    },
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

pub fn update_request(a: &UsageSet) -> Result<pb::UpdatePstnUsageRequest, Failure> {
    let mut usage = pb::PstnUsage {
        name: a.name.clone(),
        ..Default::default()
    };
    let mut paths = Vec::new();
    if let Some(p) = a.priority {
        usage.priority = p;
        paths.push("priority".to_string());
    }
    if let Some(d) = &a.description {
        usage.description = d.clone();
        paths.push("description".to_string());
    }
    if paths.is_empty() {
        return Err(usage_error(format!(
            "nothing to change for usage '{}': give --priority and/or --description",
            a.name
        )));
    }
    Ok(pb::UpdatePstnUsageRequest {
        usage: Some(usage),
        update_mask: Some(prost_types::FieldMask { paths }),
        expected_revision: a.revision.expected(),
    })
}

pub async fn run(ctx: &mut Ctx, cmd: UsageCmd) -> Result<(), Failure> {
    let out = ctx.out;
    let client = &mut ctx.client;
    match cmd {
        UsageCmd::Add {
            name,
            priority,
            description,
        } => {
            let req = pb::CreatePstnUsageRequest {
                usage: Some(pb::PstnUsage {
                    name,
                    priority,
                    description,
                    meta: None,
                }),
            };
            let u = client.create_pstn_usage(req).await?.into_inner();
            print_one(out, &u)
        }
        UsageCmd::Set(a) => {
            let u = client
                .update_pstn_usage(update_request(&a)?)
                .await?
                .into_inner();
            print_one(out, &u)
        }
        UsageCmd::Show { name } => {
            let u = client
                .get_pstn_usage(pb::GetRequest { name })
                .await?
                .into_inner();
            print_one(out, &u)
        }
        UsageCmd::List => {
            let usages = all_pages(async |page_token| {
                let req = pb::ListPstnUsagesRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                };
                let r = client.list_pstn_usages(req).await?.into_inner();
                Ok((r.usages, r.next_page_token))
            })
            .await?;
            print_list(out, &usages)
        }
        UsageCmd::Remove { name, revision } => {
            let req = pb::DeleteRequest {
                name: name.clone(),
                expected_revision: revision.expected(),
            };
            client.delete_pstn_usage(req).await?;
            print_removed(out, "usage", &name)
        }
    }
}

impl Show for pb::PstnUsage {
    const PLURAL: &'static str = "PSTN usages";
    const COLUMNS: &'static [&'static str] = &["NAME", "PRIORITY", "DESCRIPTION", "REVISION"];

    fn json(&self) -> Result<Value, Failure> {
        let u = convert::usage_from_pb(self).map_err(|e| bad_reply("usage", &self.name, e))?;
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
        let r = update_request(&set(None, Some(""))).expect("request");
        assert_eq!(r.update_mask.unwrap_or_default().paths, ["description"]);
        assert_eq!(r.expected_revision, 2);
        let r = update_request(&set(Some(5), None)).expect("request");
        assert_eq!(r.update_mask.unwrap_or_default().paths, ["priority"]);
        assert!(matches!(
            update_request(&set(None, None)),
            Err(Failure::Usage(_))
        ));
    }
}
