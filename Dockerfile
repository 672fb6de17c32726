# digitrec web app: gunicorn serving the bundled CNN ensemble on port 8000 (CPU-only torch).
#   docker build -t digitrec . && docker run --rm -p 8000:8000 digitrec
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin digitrec
WORKDIR /app

# CPU-only torch first (its own index), so installing the package does not pull CUDA wheels.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /app/src

USER digitrec
# Export the ensemble to ONNX (fp32, and the int8 graph the app serves) once, into the image's
# cache, so that workers start warm.
RUN python -c "from digitrec.recognizer import Recognizer; Recognizer.load(backend='int8')"
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["digitrec", "serve", "--host", "0.0.0.0"]
