//! The one resource layer: `add`, `set`, `show`, `list` and `remove` for every kind of the
//! topology — the clap verbs, the RPC calls, paging, revisions and printing — written once over
//! [`Resource`]. A kind's own file declares only what is its own: its flags and requests, which
//! RPCs serve it (`rpcs!`), its help texts, how it prints ([`Show`]) and any further verbs.

use std::collections::HashSet;
use std::fmt::Debug;

use clap::{Args, Subcommand};
use mediator_proto::control::v1 as pb;

use crate::output::{Show, print_list, print_one, print_removed};
use crate::{Client, Ctx, Failure};

pub const PAGE_SIZE: u32 = 200;

pub type RpcResult<T> = Result<T, tonic::Status>;

/// What `--help` says about one verb of a kind.
#[derive(Debug)]
pub struct VerbHelp {
    /// The summary: the verb list and `-h` (no final period, as clap shows doc comments).
    pub about: &'static str,
    /// The whole text for `--help`, where there is more to say than `about`.
    pub long_about: Option<&'static str>,
    /// `Examples:` and indented commands, shown after the options.
    pub examples: &'static str,
}

impl VerbHelp {
    pub const fn new(about: &'static str, examples: &'static str) -> Self {
        VerbHelp {
            about,
            long_about: None,
            examples,
        }
    }

    pub const fn long(self, long_about: &'static str) -> Self {
        VerbHelp {
            long_about: Some(long_about),
            ..self
        }
    }
}

/// A kind's help texts; clap's attributes need them as constants.
#[derive(Debug)]
pub struct Help {
    pub add: VerbHelp,
    pub set: VerbHelp,
    pub show: VerbHelp,
    pub list: VerbHelp,
    pub remove: VerbHelp,
    /// The positional that names one, for `show`.
    pub key: &'static str,
    /// The same for `remove`, which may accept fewer (not `global`).
    pub remove_key: &'static str,
}

/// `--revision N`, shared by every write to an existing resource.
#[derive(Args, Debug, Clone, Default)]
pub struct RevisionArg {
    /// Only change it if it is still at revision N (see `show`); 0 or absent: whatever the
    /// revision.
    #[arg(long, value_name = "N")]
    pub revision: Option<u64>,
}

impl RevisionArg {
    pub fn expected(&self) -> u64 {
        self.revision.unwrap_or(0)
    }
}

/// The update mask of a `set`: the fields it gives, as the API names them.
pub fn field_mask(paths: &[impl AsRef<str>]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.as_ref().to_string()).collect(),
    })
}

/// A kind of topology resource: what its commands do that the others' do not.
pub trait Resource: Debug + Sized + 'static {
    /// Its name in messages: `removed pool …`, `the server sent pool …`.
    const NOUN: &'static str;
    const HELP: Help;
    /// The positional that names one, as its id (zsh completions show it) and its value name.
    const KEY: (&'static str, &'static str) = ("name", "NAME");

    /// The API's message for one, as printed.
    type Item: Show;
    /// `add`'s flags.
    type Add: Args + Debug;
    /// `set`'s flags.
    type Set: Args + Debug;
    /// `list`'s filter flags.
    type Filter: Args + Debug;
    /// The verbs after `remove` that only this kind has.
    type More: MoreVerbs;
    type CreateRequest;
    type UpdateRequest;
    type ListRequest;

    fn create_request(a: &Self::Add) -> Result<Self::CreateRequest, Failure>;

    /// The resource `set` must read first (to complete what was half given), if any.
    fn needs_current(_a: &Self::Set) -> Option<&str> {
        None
    }

    /// The update for `set`: only the fields given, named in the mask. `current` is the resource
    /// as read when [`Resource::needs_current`] asked for it. Refuses a `set` that changes
    /// nothing.
    fn update_request(
        a: &Self::Set,
        current: Option<&Self::Item>,
    ) -> Result<Self::UpdateRequest, Failure>;

    fn list_request(filter: &Self::Filter, page_token: String) -> Self::ListRequest;

    /// Checks the positional that names one on the command line, so a typo is a usage error
    /// and not a server round trip.
    fn key(s: &str) -> Result<String, String> {
        Ok(s.to_string())
    }

    /// Refuses a `remove` the server would refuse anyway, with what to do instead.
    fn check_remove(_name: &str) -> Result<(), Failure> {
        Ok(())
    }

    // The RPCs, bound by `rpcs!`.
    async fn create(c: &mut Client, r: Self::CreateRequest) -> RpcResult<Self::Item>;
    async fn get(c: &mut Client, r: pb::GetRequest) -> RpcResult<Self::Item>;
    async fn update(c: &mut Client, r: Self::UpdateRequest) -> RpcResult<Self::Item>;
    /// One page: the items and the next page's token ("" after the last).
    async fn list(c: &mut Client, r: Self::ListRequest) -> RpcResult<(Vec<Self::Item>, String)>;
    async fn delete(c: &mut Client, r: pb::DeleteRequest) -> RpcResult<()>;
}

/// Binds a kind's five RPCs on the topology client inside its `impl Resource`; `list: m =>
/// field` names the list method and the response field holding the page.
macro_rules! rpcs {
    (
        create: $create:ident,
        get: $get:ident,
        update: $update:ident,
        delete: $delete:ident,
        list: $list:ident => $items:ident $(,)?
    ) => {
        async fn create(
            c: &mut $crate::Client,
            r: Self::CreateRequest,
        ) -> $crate::resource::RpcResult<Self::Item> {
            c.$create(r).await.map(tonic::Response::into_inner)
        }

        async fn get(
            c: &mut $crate::Client,
            r: mediator_proto::control::v1::GetRequest,
        ) -> $crate::resource::RpcResult<Self::Item> {
            c.$get(r).await.map(tonic::Response::into_inner)
        }

        async fn update(
            c: &mut $crate::Client,
            r: Self::UpdateRequest,
        ) -> $crate::resource::RpcResult<Self::Item> {
            c.$update(r).await.map(tonic::Response::into_inner)
        }

        async fn list(
            c: &mut $crate::Client,
            r: Self::ListRequest,
        ) -> $crate::resource::RpcResult<(Vec<Self::Item>, String)> {
            let page = c.$list(r).await?.into_inner();
            Ok((page.$items, page.next_page_token))
        }

        async fn delete(
            c: &mut $crate::Client,
            r: mediator_proto::control::v1::DeleteRequest,
        ) -> $crate::resource::RpcResult<()> {
            c.$delete(r).await.map(drop)
        }
    };
}
pub(crate) use rpcs;

/// The verbs of a kind that the others do not have, run by the kind itself.
pub trait MoreVerbs: Subcommand + Debug {
    async fn run(self, ctx: &mut Ctx) -> Result<(), Failure>;
}

/// For kinds with only the five verbs.
#[derive(Subcommand, Debug)]
pub enum NoMoreVerbs {}

impl MoreVerbs for NoMoreVerbs {
    async fn run(self, _ctx: &mut Ctx) -> Result<(), Failure> {
        match self {}
    }
}

/// `mediatorctl <kind> …`: the five verbs every kind has, then its own.
#[derive(Subcommand, Debug)]
pub enum Verb<R: Resource> {
    #[command(
        about = R::HELP.add.about,
        long_about = R::HELP.add.long_about,
        after_help = R::HELP.add.examples
    )]
    Add(R::Add),
    #[command(
        about = R::HELP.set.about,
        long_about = R::HELP.set.long_about,
        after_help = R::HELP.set.examples
    )]
    Set(R::Set),
    #[command(
        about = R::HELP.show.about,
        long_about = R::HELP.show.long_about,
        after_help = R::HELP.show.examples
    )]
    Show {
        #[arg(id = R::KEY.0, value_name = R::KEY.1, help = R::HELP.key, value_parser = R::key)]
        name: String,
    },
    #[command(
        about = R::HELP.list.about,
        long_about = R::HELP.list.long_about,
        after_help = R::HELP.list.examples
    )]
    List(R::Filter),
    #[command(
        about = R::HELP.remove.about,
        long_about = R::HELP.remove.long_about,
        after_help = R::HELP.remove.examples
    )]
    Remove {
        #[arg(
            id = R::KEY.0,
            value_name = R::KEY.1,
            help = R::HELP.remove_key,
            value_parser = R::key
        )]
        name: String,
        #[command(flatten)]
        revision: RevisionArg,
    },
    #[command(flatten)]
    More(R::More),
}

/// `list` for kinds that have no filters.
#[derive(Args, Debug)]
pub struct NoFilter {}

pub async fn run<R: Resource>(ctx: &mut Ctx, verb: Verb<R>) -> Result<(), Failure> {
    let out = ctx.out;
    let client = &mut ctx.client;
    match verb {
        Verb::Add(a) => {
            let item = R::create(client, R::create_request(&a)?).await?;
            print_one(out, &item)
        }
        Verb::Set(a) => {
            let current = match R::needs_current(&a) {
                Some(name) => {
                    let get = pb::GetRequest { name: name.into() };
                    Some(R::get(client, get).await?)
                }
                None => None,
            };
            let item = R::update(client, R::update_request(&a, current.as_ref())?).await?;
            print_one(out, &item)
        }
        Verb::Show { name } => print_one(out, &R::get(client, pb::GetRequest { name }).await?),
        Verb::List(filter) => {
            let items =
                all_pages(async |token| R::list(client, R::list_request(&filter, token)).await)
                    .await?;
            print_list(out, &items)
        }
        Verb::Remove { name, revision } => {
            R::check_remove(&name)?;
            let req = pb::DeleteRequest {
                name: name.clone(),
                expected_revision: revision.expected(),
            };
            R::delete(client, req).await?;
            print_removed(out, R::NOUN, &name)
        }
        Verb::More(more) => more.run(ctx).await,
    }
}

/// Collects every page of a List RPC. A server that hands out the same token twice would keep
/// us looping forever, so that is reported instead.
pub async fn all_pages<T>(
    mut fetch: impl AsyncFnMut(String) -> Result<(Vec<T>, String), tonic::Status>,
) -> Result<Vec<T>, Failure> {
    let mut items = Vec::new();
    let mut token = String::new();
    let mut seen = HashSet::new();
    loop {
        let (mut page, next) = fetch(token).await?;
        items.append(&mut page);
        if next.is_empty() {
            return Ok(items);
        }
        if !seen.insert(next.clone()) {
            return Err(Failure::BadReply(format!(
                "the server returned page token '{next}' twice; its listing would never end"
            )));
        }
        token = next;
    }
}

/// A kind's verbs parsed from `args` alone, for the kinds' own tests.
#[cfg(test)]
pub fn parse<R: Resource>(args: &[&str]) -> Result<Verb<R>, clap::Error> {
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T<R: Resource> {
        #[command(subcommand)]
        verb: Verb<R>,
    }
    T::<R>::try_parse_from(["t"].iter().chain(args)).map(|t| t.verb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_followed_until_the_token_is_empty() {
        let mut calls = Vec::new();
        let items = all_pages(async |token: String| {
            calls.push(token.clone());
            Ok(match token.as_str() {
                "" => (vec![1, 2], "a".to_string()),
                "a" => (vec![3], "b".to_string()),
                _ => (vec![], String::new()),
            })
        })
        .await;
        assert_eq!(items.ok(), Some(vec![1, 2, 3]));
        assert_eq!(calls, ["", "a", "b"]);
        let looping = all_pages(async |_t: String| Ok((vec![0], "same".to_string()))).await;
        assert!(matches!(looping, Err(Failure::BadReply(_))));
    }
}
