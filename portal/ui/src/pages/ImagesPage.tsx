import { useQuery } from "@tanstack/react-query";

import { listImagesOptions } from "../client/@tanstack/react-query.gen";
import { Ago, Empty, ErrorState, Loading, StatusBadge } from "../components/States";

export function ImagesPage() {
  const images = useQuery(listImagesOptions());
  return (
    <section aria-labelledby="images-title">
      <div className="page-head">
        <div>
          <h1 id="images-title">Images</h1>
          <p className="muted">
            The catalog of the image registry, polled by the portal
            {images.data && (
              <>
                {" · "}confirmed <Ago at={images.data.fetched_at} />
              </>
            )}
          </p>
        </div>
      </div>
      {images.isPending ? (
        <Loading label="Loading images" />
      ) : images.isError ? (
        <ErrorState error={images.error} onRetry={() => void images.refetch()} />
      ) : images.data.images.length === 0 ? (
        <Empty title={images.data.stale ? "The image registry has not answered yet" : "No images in the catalog"}>
          {images.data.error}
        </Empty>
      ) : (
        <div className="table-wrap card">
          <table className="table" data-testid="image-table">
            <thead>
              <tr>
                <th scope="col">Image</th>
                <th scope="col">OS</th>
                <th scope="col">Version</th>
                <th scope="col" className="num">
                  Size
                </th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {images.data.images.map((image) => (
                <tr key={image.id} data-testid="image-row">
                  <th scope="row">
                    {image.name}
                    <div className="muted small mono">{image.id}</div>
                  </th>
                  <td>{image.os}</td>
                  <td className="mono">{image.version}</td>
                  <td className="num">{image.size_gb.toFixed(1)} GB</td>
                  <td>
                    <StatusBadge status={image.status} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
