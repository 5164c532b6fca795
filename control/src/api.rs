//! `mediator.control.v1.TopologyService`: requests in, registry calls, responses out. Every
//! `TopologyError` becomes a `tonic::Status` in [`status`] and nowhere else.

use std::sync::Arc;

use mediator_proto::control::v1 as pb;
use pb::topology_service_server::TopologyService;
use tonic::{Request, Response, Status};

use crate::registry::Registry;
use mediator_topology::model::{
    FieldError, Gateway, Pool, PstnUsage, SETTING_NAMES, Settings, Trunk, VoiceRoute, field_error,
};
use mediator_topology::proto::*;
use mediator_topology::topology::{Item, Resource, TopologyError, TrunkConfig};

pub struct Api {
    registry: Arc<Registry>,
    /// The SIP runtime's trunk health, for Trunk.health (None: no runtime, no health).
    health: Option<crate::calls::HealthView>,
    /// Its DNS answers, for Gateway.resolved and Pool.next_hop_resolved.
    dns: Option<crate::calls::DnsView>,
}

impl Api {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            health: None,
            dns: None,
        }
    }

    /// Trunks read through this API carry the health the SIP runtime found.
    pub fn with_health(mut self, health: crate::calls::HealthView) -> Self {
        self.health = Some(health);
        self
    }

    /// Gateways and pools read through this API carry the DNS answers the SIP runtime uses.
    pub fn with_dns(mut self, dns: crate::calls::DnsView) -> Self {
        self.dns = Some(dns);
        self
    }

    /// The DNS answers in use for `host`.
    fn resolved(&self, host: &str) -> Vec<pb::Resolution> {
        self.dns
            .as_ref()
            .and_then(|d| {
                let d = d.lock().ok()?;
                Some(
                    d.iter()
                        .filter(|(q, _)| q.host == host)
                        .map(|(q, r)| crate::calls_api::resolution_to_pb(q, r))
                        .collect(),
                )
            })
            .unwrap_or_default()
    }

    fn gateway_out(&self, item: &Item<Gateway>) -> pb::Gateway {
        let mut g = gateway_to_pb(item);
        g.resolved = self.resolved(&g.name);
        g
    }

    fn pool_out(&self, item: &Item<Pool>) -> pb::Pool {
        let mut p = pool_to_pb(item);
        p.next_hop_resolved = self.resolved(&item.value.next_hop.host);
        p
    }

    /// `t` as the API shows it, with its health when it is probed.
    fn trunk_out(&self, item: &Item<Trunk>) -> pb::Trunk {
        let mut t = trunk_to_pb(item);
        t.health = self.health.as_ref().and_then(|h| {
            h.lock()
                .ok()?
                .get(&t.name)
                .map(crate::calls_api::health_to_pb)
        });
        t
    }
}

pub fn status(e: TopologyError) -> Status {
    match &e {
        TopologyError::Invalid(_) | TopologyError::Document(_) => {
            Status::invalid_argument(e.to_string())
        }
        TopologyError::NotFound { .. } => Status::not_found(e.to_string()),
        TopologyError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        TopologyError::InUse { .. } | TopologyError::Precondition { .. } => {
            Status::failed_precondition(e.to_string())
        }
        TopologyError::Conflict { .. } => Status::aborted(e.to_string()),
        TopologyError::Store(_) => Status::unavailable(e.to_string()),
    }
}

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn required<'a, T>(field: &str, v: &'a Option<T>) -> Result<&'a T, Status> {
    v.as_ref()
        .ok_or_else(|| Status::invalid_argument(format!("{field}: is required")))
}

fn name_arg(name: &str) -> Result<&str, Status> {
    if name.is_empty() {
        Err(Status::invalid_argument("name: is required"))
    } else {
        Ok(name)
    }
}

/// The paths of an update mask, checked against what the resource lets change.
fn mask_paths(
    mask: &Option<prost_types::FieldMask>,
    allowed: &[&str],
) -> Result<Vec<String>, Status> {
    let paths = mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        return Err(Status::invalid_argument(format!(
            "update_mask: name the fields to change (any of: {})",
            allowed.join(", ")
        )));
    }
    for p in &paths {
        if !allowed.contains(&p.as_str()) {
            return Err(Status::invalid_argument(format!(
                "update_mask: '{p}' cannot be changed (allowed: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(paths)
}

/// One page of names in order after `token`.
fn page<T: Clone>(
    items: impl Iterator<Item = (String, T)>,
    size: u32,
    token: &str,
) -> Result<(Vec<T>, String), Status> {
    let size = match size {
        0 => 100,
        n @ 1..=1000 => n as usize,
        n => {
            return Err(Status::invalid_argument(format!(
                "page_size: {n} is outside 1-1000"
            )));
        }
    };
    let mut out: Vec<(String, T)> = items
        .filter(|(n, _)| token.is_empty() || n.as_str() > token)
        .take(size + 1)
        .collect();
    let next = if out.len() > size {
        out.truncate(size);
        out.last().map(|(n, _)| n.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((out.into_iter().map(|(_, v)| v).collect(), next))
}

fn get<R: Resource, P>(
    reg: &Registry,
    name: &str,
    to_pb: impl Fn(&Item<R>) -> P,
) -> Result<Response<P>, Status> {
    let name = name_arg(name)?;
    reg.read(|t| t.get::<R>(name).map(to_pb))
        .map(Response::new)
        .map_err(status)
}

fn delete<R: Resource>(
    reg: &Registry,
    r: pb::DeleteRequest,
) -> Result<Response<pb::DeleteResponse>, Status> {
    let name = name_arg(&r.name)?;
    reg.delete::<R>(name, r.expected_revision).map_err(status)?;
    tracing::info!(kind = R::KIND.name(), name, "deleted");
    Ok(Response::new(pb::DeleteResponse {}))
}

fn created<R: Resource, P>(
    item: Item<R>,
    to_pb: impl Fn(&Item<R>) -> P,
) -> Result<Response<P>, Status> {
    tracing::info!(kind = R::KIND.name(), name = item.value.name(), "created");
    Ok(Response::new(to_pb(&item)))
}

fn copy_setting(dst: &mut Settings, src: &Settings, name: &str) {
    macro_rules! copy {
        ($f:ident) => {
            if name == stringify!($f) {
                dst.$f = src.$f.clone();
            }
        };
    }
    mediator_topology::for_each_setting!(copy);
}

#[tonic::async_trait]
impl TopologyService for Api {
    // ---- pools ----
    async fn create_pool(
        &self,
        r: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let p = Pool::try_from(required("pool", &r.get_ref().pool)?).map_err(invalid)?;
        created(self.registry.create(p).map_err(status)?, pool_to_pb)
    }
    async fn get_pool(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::Pool>, Status> {
        get::<Pool, _>(&self.registry, &r.get_ref().name, |i| self.pool_out(i))
    }
    async fn list_pools(
        &self,
        r: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let r = r.into_inner();
        let (pools, next_page_token) = self.registry.read(|t| {
            page(
                t.pools
                    .iter()
                    .filter(|(_, p)| r.site.is_empty() || p.value.site == r.site)
                    .map(|(n, p)| (n.clone(), self.pool_out(p))),
                r.page_size,
                &r.page_token,
            )
        })?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools,
            next_page_token,
        }))
    }
    async fn update_pool(
        &self,
        r: Request<pb::UpdatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let r = r.into_inner();
        let p = required("pool", &r.pool)?;
        let paths = mask_paths(
            &r.update_mask,
            &[
                "site",
                "dataplanes",
                "pool_side_listen",
                "gateway_side_address",
                "next_hop",
                "media_encryption",
                "draining",
            ],
        )?;
        let item = self
            .registry
            .update::<Pool>(name_arg(&p.name)?, r.expected_revision, |cur| {
                for path in &paths {
                    match path.as_str() {
                        "site" => cur.site = p.site.clone(),
                        "dataplanes" => cur.dataplanes = p.dataplanes.clone(),
                        "pool_side_listen" => {
                            cur.pool_side_listen = p.pool_side_listen.parse().map_err(|_| {
                                field_error(
                                    "pool_side_listen",
                                    format!("'{}' is not ip:port", p.pool_side_listen),
                                )
                            })?
                        }
                        "gateway_side_address" => {
                            cur.gateway_side_address =
                                p.gateway_side_address.parse().map_err(|_| {
                                    field_error(
                                        "gateway_side_address",
                                        format!(
                                            "'{}' is not an IP address",
                                            p.gateway_side_address
                                        ),
                                    )
                                })?
                        }
                        "media_encryption" => {
                            cur.media_encryption =
                                media_encryption_from_pb("media_encryption", p.media_encryption)?
                        }
                        "draining" => cur.draining = p.draining,
                        _ => {
                            let hop = p
                                .next_hop
                                .as_ref()
                                .ok_or_else(|| field_error("next_hop", "is required"))?;
                            cur.next_hop = mediator_topology::model::HostPort {
                                host: hop.host.clone(),
                                port: port("next_hop.port", hop.port)?,
                                transport: transport_from_pb("next_hop.transport", hop.transport)?,
                            };
                        }
                    }
                }
                Ok(())
            })
            .map_err(status)?;
        Ok(Response::new(pool_to_pb(&item)))
    }
    async fn delete_pool(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        delete::<Pool>(&self.registry, r.into_inner())
    }

    // ---- gateways ----
    async fn create_gateway(
        &self,
        r: Request<pb::CreateGatewayRequest>,
    ) -> Result<Response<pb::Gateway>, Status> {
        let r = r.into_inner();
        let g = Gateway::try_from(required("gateway", &r.gateway)?).map_err(invalid)?;
        let root =
            root_trunk_from_pb(&g.name, required("root_trunk", &r.root_trunk)?).map_err(invalid)?;
        let (g, _) = self.registry.create_gateway(g, root).map_err(status)?;
        created(g, gateway_to_pb)
    }
    async fn get_gateway(
        &self,
        r: Request<pb::GetRequest>,
    ) -> Result<Response<pb::Gateway>, Status> {
        get::<Gateway, _>(&self.registry, &r.get_ref().name, |i| self.gateway_out(i))
    }
    async fn list_gateways(
        &self,
        r: Request<pb::ListGatewaysRequest>,
    ) -> Result<Response<pb::ListGatewaysResponse>, Status> {
        let r = r.into_inner();
        let kind = if r.kind == 0 {
            None
        } else {
            Some(kind_from_pb("kind", r.kind).map_err(invalid)?)
        };
        let (gateways, next_page_token) = self.registry.read(|t| {
            page(
                t.gateways
                    .iter()
                    .filter(|(_, g)| {
                        (r.site.is_empty() || g.value.site == r.site)
                            && kind.is_none_or(|k| g.value.kind == k)
                    })
                    .map(|(n, g)| (n.clone(), self.gateway_out(g))),
                r.page_size,
                &r.page_token,
            )
        })?;
        Ok(Response::new(pb::ListGatewaysResponse {
            gateways,
            next_page_token,
        }))
    }
    async fn update_gateway(
        &self,
        r: Request<pb::UpdateGatewayRequest>,
    ) -> Result<Response<pb::Gateway>, Status> {
        let r = r.into_inner();
        let g = required("gateway", &r.gateway)?;
        let paths = mask_paths(&r.update_mask, &["kind", "site"])?;
        let item = self
            .registry
            .update::<Gateway>(name_arg(&g.name)?, r.expected_revision, |cur| {
                for path in &paths {
                    match path.as_str() {
                        "kind" => cur.kind = kind_from_pb("kind", g.kind)?,
                        _ => cur.site = g.site.clone(),
                    }
                }
                Ok(())
            })
            .map_err(status)?;
        Ok(Response::new(gateway_to_pb(&item)))
    }
    async fn delete_gateway(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        delete::<Gateway>(&self.registry, r.into_inner())
    }

    // ---- trunks ----
    async fn create_trunk(
        &self,
        r: Request<pb::CreateTrunkRequest>,
    ) -> Result<Response<pb::Trunk>, Status> {
        let t = Trunk::try_from(required("trunk", &r.get_ref().trunk)?).map_err(invalid)?;
        if t.is_root() {
            return Err(Status::invalid_argument(
                "name: a trunk named after its gateway is the root trunk, which comes with CreateGateway",
            ));
        }
        created(self.registry.create(t).map_err(status)?, |i| {
            self.trunk_out(i)
        })
    }
    async fn get_trunk(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::Trunk>, Status> {
        get::<Trunk, _>(&self.registry, &r.get_ref().name, |i| self.trunk_out(i))
    }
    async fn list_trunks(
        &self,
        r: Request<pb::ListTrunksRequest>,
    ) -> Result<Response<pb::ListTrunksResponse>, Status> {
        let r = r.into_inner();
        let (trunks, next_page_token) = self.registry.read(|t| {
            page(
                t.trunks
                    .iter()
                    .filter(|(_, x)| {
                        (r.gateway.is_empty() || x.value.gateway == r.gateway)
                            && (r.pool.is_empty() || x.value.pool == r.pool)
                    })
                    .map(|(n, x)| (n.clone(), self.trunk_out(x))),
                r.page_size,
                &r.page_token,
            )
        })?;
        Ok(Response::new(pb::ListTrunksResponse {
            trunks,
            next_page_token,
        }))
    }
    async fn update_trunk(
        &self,
        r: Request<pb::UpdateTrunkRequest>,
    ) -> Result<Response<pb::Trunk>, Status> {
        let r = r.into_inner();
        let t = required("trunk", &r.trunk)?;
        let paths = mask_paths(
            &r.update_mask,
            &["gateway_port", "transport", "pool", "pool_port"],
        )?;
        let item = self
            .registry
            .update::<Trunk>(name_arg(&t.name)?, r.expected_revision, |cur| {
                for path in &paths {
                    match path.as_str() {
                        "gateway_port" => cur.gateway_port = port("gateway_port", t.gateway_port)?,
                        "transport" => cur.transport = transport_from_pb("transport", t.transport)?,
                        "pool" => cur.pool = t.pool.clone(),
                        _ => cur.pool_port = port("pool_port", t.pool_port)?,
                    }
                }
                Ok(())
            })
            .map_err(status)?;
        Ok(Response::new(self.trunk_out(&item)))
    }
    async fn delete_trunk(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        delete::<Trunk>(&self.registry, r.into_inner())
    }

    // ---- trunk configuration ----
    async fn create_trunk_configuration(
        &self,
        r: Request<pb::CreateTrunkConfigurationRequest>,
    ) -> Result<Response<pb::TrunkConfiguration>, Status> {
        let c = TrunkConfig::try_from(required("configuration", &r.get_ref().configuration)?)
            .map_err(invalid)?;
        created(self.registry.create(c).map_err(status)?, config_to_pb)
    }
    async fn get_trunk_configuration(
        &self,
        r: Request<pb::GetRequest>,
    ) -> Result<Response<pb::TrunkConfiguration>, Status> {
        get::<TrunkConfig, _>(&self.registry, &r.get_ref().name, config_to_pb)
    }
    async fn list_trunk_configurations(
        &self,
        r: Request<pb::ListTrunkConfigurationsRequest>,
    ) -> Result<Response<pb::ListTrunkConfigurationsResponse>, Status> {
        let r = r.into_inner();
        let (configurations, next_page_token) = self.registry.read(|t| {
            page(
                t.configs.iter().map(|(n, c)| (n.clone(), config_to_pb(c))),
                r.page_size,
                &r.page_token,
            )
        })?;
        Ok(Response::new(pb::ListTrunkConfigurationsResponse {
            configurations,
            next_page_token,
        }))
    }
    async fn update_trunk_configuration(
        &self,
        r: Request<pb::UpdateTrunkConfigurationRequest>,
    ) -> Result<Response<pb::TrunkConfiguration>, Status> {
        let r = r.into_inner();
        let c = required("configuration", &r.configuration)?;
        let allowed: Vec<String> = SETTING_NAMES
            .iter()
            .map(|n| format!("settings.{n}"))
            .collect();
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        let paths = mask_paths(&r.update_mask, &allowed)?;
        let incoming = c
            .settings
            .as_ref()
            .map(settings_from_pb_unchecked)
            .transpose()
            .map_err(invalid)?
            .unwrap_or_default();
        let item = self
            .registry
            .update::<TrunkConfig>(name_arg(&c.name)?, r.expected_revision, |cur| {
                for path in &paths {
                    copy_setting(
                        &mut cur.settings,
                        &incoming,
                        path.trim_start_matches("settings."),
                    );
                }
                Ok(())
            })
            .map_err(status)?;
        Ok(Response::new(config_to_pb(&item)))
    }
    async fn delete_trunk_configuration(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        delete::<TrunkConfig>(&self.registry, r.into_inner())
    }
    async fn get_effective_trunk_configuration(
        &self,
        r: Request<pb::GetRequest>,
    ) -> Result<Response<pb::EffectiveTrunkConfiguration>, Status> {
        let name = name_arg(&r.get_ref().name)?;
        let e = self.registry.read(|t| t.effective(name)).map_err(status)?;
        Ok(Response::new(effective_to_pb(name, &e)))
    }

    // ---- usages ----
    async fn create_pstn_usage(
        &self,
        r: Request<pb::CreatePstnUsageRequest>,
    ) -> Result<Response<pb::PstnUsage>, Status> {
        let u = PstnUsage::try_from(required("usage", &r.get_ref().usage)?).map_err(invalid)?;
        created(self.registry.create(u).map_err(status)?, usage_to_pb)
    }
    async fn get_pstn_usage(
        &self,
        r: Request<pb::GetRequest>,
    ) -> Result<Response<pb::PstnUsage>, Status> {
        get::<PstnUsage, _>(&self.registry, &r.get_ref().name, usage_to_pb)
    }
    async fn list_pstn_usages(
        &self,
        r: Request<pb::ListPstnUsagesRequest>,
    ) -> Result<Response<pb::ListPstnUsagesResponse>, Status> {
        let r = r.into_inner();
        let (usages, next_page_token) = self.registry.read(|t| {
            page(
                t.usages.iter().map(|(n, u)| (n.clone(), usage_to_pb(u))),
                r.page_size,
                &r.page_token,
            )
        })?;
        Ok(Response::new(pb::ListPstnUsagesResponse {
            usages,
            next_page_token,
        }))
    }
    async fn update_pstn_usage(
        &self,
        r: Request<pb::UpdatePstnUsageRequest>,
    ) -> Result<Response<pb::PstnUsage>, Status> {
        let r = r.into_inner();
        let u = required("usage", &r.usage)?;
        let paths = mask_paths(&r.update_mask, &["priority", "description"])?;
        let item = self
            .registry
            .update::<PstnUsage>(name_arg(&u.name)?, r.expected_revision, |cur| {
                for path in &paths {
                    match path.as_str() {
                        "priority" => cur.priority = u.priority,
                        _ => cur.description = u.description.clone(),
                    }
                }
                Ok(())
            })
            .map_err(status)?;
        Ok(Response::new(usage_to_pb(&item)))
    }
    async fn delete_pstn_usage(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        delete::<PstnUsage>(&self.registry, r.into_inner())
    }

    // ---- routes ----
    async fn create_voice_route(
        &self,
        r: Request<pb::CreateVoiceRouteRequest>,
    ) -> Result<Response<pb::VoiceRoute>, Status> {
        let v = VoiceRoute::try_from(required("route", &r.get_ref().route)?).map_err(invalid)?;
        created(self.registry.create(v).map_err(status)?, route_to_pb)
    }
    async fn get_voice_route(
        &self,
        r: Request<pb::GetRequest>,
    ) -> Result<Response<pb::VoiceRoute>, Status> {
        get::<VoiceRoute, _>(&self.registry, &r.get_ref().name, route_to_pb)
    }
    async fn list_voice_routes(
        &self,
        r: Request<pb::ListVoiceRoutesRequest>,
    ) -> Result<Response<pb::ListVoiceRoutesResponse>, Status> {
        let r = r.into_inner();
        let (routes, next_page_token) = self.registry.read(|t| {
            page(
                t.routes
                    .iter()
                    .filter(|(_, x)| {
                        (r.pstn_usage.is_empty() || x.value.pstn_usages.contains(&r.pstn_usage))
                            && (r.trunk.is_empty() || x.value.trunks.contains(&r.trunk))
                    })
                    .map(|(n, x)| (n.clone(), route_to_pb(x))),
                r.page_size,
                &r.page_token,
            )
        })?;
        Ok(Response::new(pb::ListVoiceRoutesResponse {
            routes,
            next_page_token,
        }))
    }
    async fn update_voice_route(
        &self,
        r: Request<pb::UpdateVoiceRouteRequest>,
    ) -> Result<Response<pb::VoiceRoute>, Status> {
        let r = r.into_inner();
        let v = required("route", &r.route)?;
        let paths = mask_paths(
            &r.update_mask,
            &[
                "pattern",
                "priority",
                "trunks",
                "pstn_usages",
                "suppress_caller_id",
                "alternate_caller_id",
                "description",
            ],
        )?;
        let item = self
            .registry
            .update::<VoiceRoute>(name_arg(&v.name)?, r.expected_revision, |cur| {
                for path in &paths {
                    match path.as_str() {
                        "pattern" => cur.pattern = v.pattern.clone(),
                        "priority" => cur.priority = v.priority,
                        "trunks" => cur.trunks = v.trunks.clone(),
                        "pstn_usages" => cur.pstn_usages = v.pstn_usages.clone(),
                        "suppress_caller_id" => cur.suppress_caller_id = v.suppress_caller_id,
                        "alternate_caller_id" => {
                            cur.alternate_caller_id = v.alternate_caller_id.clone()
                        }
                        _ => cur.description = v.description.clone(),
                    }
                }
                Ok(())
            })
            .map_err(status)?;
        Ok(Response::new(route_to_pb(&item)))
    }
    async fn delete_voice_route(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        delete::<VoiceRoute>(&self.registry, r.into_inner())
    }

    // ---- route test, documents, moves ----
    async fn test_route(
        &self,
        r: Request<pb::TestRouteRequest>,
    ) -> Result<Response<pb::TestRouteResponse>, Status> {
        let r = r.into_inner();
        let attempts = self
            .registry
            .read(|t| t.test_route(&r.dialed_number, &r.pstn_usages, &r.calling_number))
            .map_err(status)?;
        Ok(Response::new(pb::TestRouteResponse {
            attempts: attempts.iter().map(attempt_to_pb).collect(),
        }))
    }
    async fn export_topology(
        &self,
        _: Request<pb::ExportTopologyRequest>,
    ) -> Result<Response<pb::ExportTopologyResponse>, Status> {
        Ok(Response::new(pb::ExportTopologyResponse {
            toml: self.registry.export().map_err(status)?,
        }))
    }
    async fn import_topology(
        &self,
        r: Request<pb::ImportTopologyRequest>,
    ) -> Result<Response<pb::ImportTopologyResponse>, Status> {
        let r = r.into_inner();
        let changes = self
            .registry
            .import(&r.toml, r.dry_run)
            .map_err(|e| match e {
                // One line per error, so a person reads every one with its place.
                TopologyError::Document(errors) => Status::invalid_argument(format!(
                    "the topology document has {} error(s):\n{}",
                    errors.len(),
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )),
                other => status(other),
            })?;
        if !r.dry_run {
            tracing::info!(changes = changes.len(), "topology document imported");
        }
        Ok(Response::new(pb::ImportTopologyResponse {
            changes: changes
                .iter()
                .map(|c| pb::TopologyChange {
                    action: c.action.into(),
                    kind: c.kind.name().into(),
                    name: c.name.clone(),
                    fields: c.fields.clone(),
                })
                .collect(),
            applied: !r.dry_run,
        }))
    }
    async fn move_trunks(
        &self,
        r: Request<pb::MoveTrunksRequest>,
    ) -> Result<Response<pb::MoveTrunksResponse>, Status> {
        let r = r.into_inner();
        let opt = |s: &str| {
            if s.is_empty() {
                None
            } else {
                Some(s.to_string())
            }
        };
        let pool_port = if r.pool_port == 0 {
            None
        } else {
            Some(port("pool_port", r.pool_port).map_err(invalid)?)
        };
        if r.to_pool.is_empty() {
            return Err(Status::invalid_argument("to_pool: is required"));
        }
        let m = self
            .registry
            .move_trunks(
                opt(&r.trunk).as_deref(),
                opt(&r.from_pool).as_deref(),
                &r.to_pool,
                pool_port,
            )
            .map_err(status)?;
        Ok(Response::new(pb::MoveTrunksResponse {
            r#move: Some(move_to_pb(&m)),
        }))
    }
    async fn list_trunk_moves(
        &self,
        _: Request<pb::ListTrunkMovesRequest>,
    ) -> Result<Response<pb::ListTrunkMovesResponse>, Status> {
        let moves = self
            .registry
            .read(|t| t.moves.iter().map(move_to_pb).collect());
        Ok(Response::new(pb::ListTrunkMovesResponse { moves }))
    }
}
