# The ferryman image: the operator (`ferryman operator`) and the migration workers (`ferryman migrate`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# a passwd entry for the user: kopf (getpass) and other libraries look the running user up by uid
RUN pip install . && rm -rf /src && useradd --uid 65532 --user-group --home-dir /tmp --no-create-home ferryman
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["ferryman"]
