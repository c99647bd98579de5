# Reference values for rectify's logit-scale ("xlogit") intervals of calibrated shares:
# R's svyciprop(method = "xlogit") on the linear calibration of make_reference.R.
# Run from this folder:  Rscript make_xlogit.R   (writes xlogit.csv, 17 significant digits)
suppressMessages(library(survey))
data(api)
fmt <- function(x) sprintf("%.17g", x)
dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, data = apistrat, fpc = ~fpc)
N <- nrow(apipop)
tot_lin <- c(`(Intercept)` = N, stypeH = 755, stypeM = 1018, api99 = sum(apipop$api99))
lin <- calibrate(dstrat, ~stype + api99, tot_lin, calfun = "linear", epsilon = 1e-13, maxit = 200)
rows <- list()
for (lev in c("No", "Yes")) {
  for (level in c(0.95, 0.9)) {
    ci <- svyciprop(as.formula(paste0("~I(comp.imp == '", lev, "')")), lin, method = "xlogit",
                    level = level)
    lim <- attr(ci, "ci")
    rows[[length(rows) + 1]] <- data.frame(case = "linear", term = lev, level = level,
                                           estimate = fmt(coef(ci)), conf_low = fmt(lim[1]),
                                           conf_high = fmt(lim[2]), df = degf(lin))
  }
}
write.csv(do.call(rbind, rows), "xlogit.csv", row.names = FALSE, quote = FALSE)
