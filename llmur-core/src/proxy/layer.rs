//! Mounting the proxy in front of another service.
//!
//! Owns: [`ProxyLayer`] and [`ProxyService`]: requests under `/v1/` go to the [`Proxy`],
//! everything else to the inner service, untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use http_body_util::Either;
use tower::{Layer, Service};

use super::{BoxError, Proxy, ProxyBody};

/// Wraps a service so that `/v1/*` is answered by the proxy.
#[derive(Debug, Clone)]
pub struct ProxyLayer {
    proxy: Proxy,
}

impl ProxyLayer {
    /// A layer serving `/v1/*` with `proxy`.
    pub fn new(proxy: Proxy) -> Self {
        Self { proxy }
    }
}

impl<S> Layer<S> for ProxyLayer {
    type Service = ProxyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProxyService {
            proxy: self.proxy.clone(),
            inner,
        }
    }
}

/// The service [`ProxyLayer`] produces.
#[derive(Debug, Clone)]
pub struct ProxyService<S> {
    proxy: Proxy,
    inner: S,
}

type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResBody> Service<Request<B>> for ProxyService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<ProxyBody, ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.uri().path().starts_with("/v1/") {
            let proxy = self.proxy.clone();
            Box::pin(async move { Ok(proxy.handle(request).await.map(Either::Left)) })
        } else {
            let future = self.inner.call(request);
            Box::pin(async move { Ok(future.await?.map(Either::Right)) })
        }
    }
}
