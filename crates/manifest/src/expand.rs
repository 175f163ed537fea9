//! Functions written as the services that run them ([`Manifest::expanded`]), so that
//! the rest of strata launches, routes, feeds and scales a function like any pool.

use crate::service::default_stop_grace_ms;
use crate::{
    AccessSpec, AutoscaleSpec, ConsumesSpec, Driver, FunctionSpec, InstancesSpec, Manifest, Network, PlacementSpec,
    RelaySpec, ResourcesSpec, Seccomp, ServiceSpec,
};

impl Manifest {
    /// The manifest with every function also written as the service that runs it:
    /// instances.min 0 (started on demand, stopped after keep_warm_ms), autoscaled on
    /// its concurrency, with a route for an HTTP trigger and consumes for a queue one.
    pub fn expanded(&self) -> Manifest {
        let mut m = self.clone();
        for (name, f) in &self.functions {
            m.services.insert(name.clone(), f.service(name));
        }
        m
    }
}

impl FunctionSpec {
    /// The service that runs this function (see [`Manifest::expanded`]).
    pub fn service(&self, name: &str) -> ServiceSpec {
        ServiceSpec {
            run: self.run.clone(),
            workdir: self.workdir.clone(),
            env: self.env.clone(),
            files: self.files.clone(),
            setup: self.setup.clone(),
            instances: InstancesSpec {
                min: 0,
                max: self.max_instances,
                initial: None,
                idle_timeout_ms: self.keep_warm_ms,
            },
            routes: self.trigger.http.iter().cloned().collect(),
            grpc: Vec::new(),
            health: self.health.clone(),
            bindings: Vec::new(),
            access: self.access_with_trigger(),
            resources: ResourcesSpec::default(),
            placement: PlacementSpec::default(),
            relay: RelaySpec {
                timeout_ms: self.timeout_ms,
                attempt_timeout_ms: Some(self.timeout_ms),
                retries: 0,
                idempotent: Vec::new(),
                grpc_calls_per_connection: None,
                ..RelaySpec::default()
            },
            stop_grace_ms: default_stop_grace_ms(),
            consumes: self.trigger.queue.as_ref().map(|q| ConsumesSpec {
                queue: q.queue.clone(),
                group: q.group.clone().unwrap_or_else(|| name.to_string()),
                batch: q.batch,
                path: self.path.clone(),
            }),
            subscribes: Vec::new(),
            autoscale: Some(AutoscaleSpec {
                concurrency: self.concurrency,
                // A batch is one event: a pool is sized for `concurrency` batches each.
                backlog: u64::from(self.concurrency) * u64::from(self.trigger.queue.as_ref().map_or(1, |q| q.batch)),
                up_window_ms: 0,
                max_inflight: Some(self.concurrency),
                ..AutoscaleSpec::default()
            }),
            driver: Driver::Process,
            image: None,
            user: None,
            network: Network::Host,
            seccomp: Seccomp::Default,
            function: Some(self.trigger.describe()),
        }
    }
}

impl FunctionSpec {
    /// Its access, with a store trigger's namespace (which it is made to read) in it.
    fn access_with_trigger(&self) -> AccessSpec {
        match (&self.access, &self.trigger.store) {
            // (A namespace that is not a name is reported at the trigger, not here.)
            (AccessSpec::Declared(list), Some(store))
                if !list.namespaces.contains(&store.namespace) && crate::is_queue_name(&store.namespace) =>
            {
                let mut list = list.clone();
                list.namespaces.push(store.namespace.clone());
                AccessSpec::Declared(list)
            }
            (access, _) => access.clone(),
        }
    }
}
