//! Background workers (tokio tasks in this process). Each takes its work from the store, so a
//! crash loses nothing (inbound updates on SQLite come through memory the store fills after
//! each commit and refills by a scan at start); each stops when told to.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use std::time::Duration;

use crate::inbound::processor::Processor;
use crate::inbound::{poller, retention};
use crate::services::Services;

/// Inbound processors per instance: enough to keep busy chats from waiting on each other.
const UPDATE_PROCESSORS: usize = 4;

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts every worker.
    pub fn start(services: &Services, config: &Config) -> Workers {
        let (stop, shutdown) = watch::channel(false);
        // Each subsystem adds its workers here.
        let mut handles: Vec<JoinHandle<()>> = Vec::new();
        // Inbound: several processors (each takes one chat's next update at a time, so
        // chats proceed in parallel) and the polling intake.
        let processor = Processor::new(
            services.clone(),
            config.command_rate_per_minute,
            Duration::from_secs(config.update_lease_seconds.into()),
        );
        for _ in 0..UPDATE_PROCESSORS {
            handles.push(tokio::spawn(processor.clone().run(shutdown.clone())));
        }
        handles.push(tokio::spawn(poller::run(
            services.clone(),
            poller::holder_name(&config.data_dir),
            shutdown.clone(),
        )));
        handles.push(tokio::spawn(retention::run(
            services.clone(),
            Duration::from_secs(u64::from(config.update_retention_days) * 86_400),
            shutdown.clone(),
        )));
        // Events: signed webhooks to tenant apps, retried on a schedule.
        handles.push(
            crate::events::Dispatcher::new(
                services.store.clone(),
                services.secrets.clone(),
                crate::events::DispatchConfig::default(),
            )
            .spawn(shutdown.clone()),
        );
        // Delivery: one sender per bot with queued messages, paced at the bot's limits.
        crate::delivery::set_default_limits(config.limits);
        handles.push(tokio::spawn(crate::delivery::sender::supervise(
            services.clone(),
            crate::delivery::SenderConfig {
                defaults: config.limits,
                ..crate::delivery::SenderConfig::default()
            },
            shutdown.clone(),
        )));
        // Schedules: claims due occurrences and hands their messages to delivery.
        handles.push(tokio::spawn(
            crate::schedules::Scheduler::new(
                services.clone(),
                crate::schedules::handoff::default_handoff(),
            )
            .run(shutdown.clone()),
        ));
        // Memberships: settles member jobs, removes whose access ended, reminds, re-checks.
        handles.push(tokio::spawn(crate::memberships::sweep::run(
            services.clone(),
            shutdown.clone(),
        )));
        // Digests: closes due digests and hands each to delivery as one message.
        handles.push(tokio::spawn(
            crate::digests::Digester::new(services.clone()).run(shutdown.clone()),
        ));
        Workers { stop, handles }
    }

    /// Asks every worker to stop and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for h in self.handles {
            let _ = h.await;
        }
    }
}
